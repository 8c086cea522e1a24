"""Do qabot's int8 models decide the same on CPUs with and without AVX-512 VNNI? Check without owning both.

onnxruntime picks its int8 kernels by CPU at run time (VNNI, AVX-512, AVX2). This prints, as JSON, what
the shipped span reader and the int8 sentence ranker compute for fixed inputs on this CPU; run it again
under user-mode QEMU emulating a CPU without AVX-512 (Debian's `qemu-user`) and compare:

    .venv/bin/python -m benchmarks.cpu_kernels > /tmp/native.json
    qemu-x86_64 -cpu Haswell .venv/bin/python -m benchmarks.cpu_kernels > /tmp/haswell.json
    .venv/bin/python -m benchmarks.cpu_kernels --compare /tmp/native.json /tmp/haswell.json

(`lscpu | grep -o 'avx512_vnni\\|avx2'` shows what the native CPU has; under QEMU, `-cpu Haswell` has AVX2
and no AVX-512.) Emulation is slow (minutes for these few inputs), so the inputs are few.
"""

from __future__ import annotations

import argparse
import json
import sys

PASSAGES = [
    "The new lamp was designed by Ingrid Solberg, an engineer from Bergen who spent two winters testing lenses.",
    "US Vice President Mike Pence and Polish Prime Minister Mateusz Morawiecki signed the deal in Warsaw.",
    "The restoration cost 48 million kroner and was paid for mostly by the Norwegian Coastal Administration.",
    "The lighthouse was first lit in 1891 and was staffed by keepers until 1987, when it was automated.",
]
QUESTIONS = ["Who designed the lamp?", "Who signed the deal?", "How much did the restoration cost?",
             "When was the lighthouse automated?"]


def measure() -> dict:
    import numpy as np

    from rag.answer.reader import SpanReader
    from rag.embed import Embedder, resolve_model

    reader = SpanReader(threads=1)
    spans = [reader.read(q, PASSAGES) for q in QUESTIONS]
    out = {"reader": [[None if s is None else [s.text, round(s.score, 4), round(s.null_score, 4)] for s in row]
                      for row in spans]}
    embedder = Embedder(resolve_model("all-MiniLM-L6-v2"), batch_size=8, torch_threads=1).with_precision("int8")
    vectors = np.asarray(embedder.embed_documents(PASSAGES + QUESTIONS))
    out["ranker_cosines"] = np.round(vectors[len(PASSAGES):] @ vectors[:len(PASSAGES)].T, 4).tolist()
    return out


#: Reader logits may differ this much between CPUs (float32 layers between the int8 ones sum in another
#: order on AVX2 than on AVX-512, and a value on a rounding edge moves one int8 step): measured 0.018 at
#: most on these inputs (0.012 with the shipped reader), native VNNI against `qemu-x86_64 -cpu Haswell`, 2026-12-06.
SCORE_TOLERANCE = 0.05


def compare(a_path: str, b_path: str) -> int:
    a, b = (json.load(open(p)) for p in (a_path, b_path))
    same_spans = all(x is None and y is None or (x and y and x[0] == y[0]) for ra, rb in zip(a["reader"], b["reader"])
                     for x, y in zip(ra, rb))
    worst_score = max((abs(x[i] - y[i]) for ra, rb in zip(a["reader"], b["reader"]) for x, y in zip(ra, rb)
                       if x and y for i in (1, 2)), default=0.0)
    worst_cos = max(abs(x - y) for ra, rb in zip(a["ranker_cosines"], b["ranker_cosines"]) for x, y in zip(ra, rb))
    print(f"reader spans identical: {same_spans}; largest reader score difference {worst_score:.4f}; "
          f"largest ranker cosine difference {worst_cos:.4f}")
    return 0 if same_spans and worst_score < SCORE_TOLERANCE and worst_cos < 1e-3 else 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.cpu_kernels", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--compare", nargs=2, metavar=("A", "B"), help="compare two outputs instead of measuring")
    args = p.parse_args(argv)
    if args.compare:
        return compare(*args.compare)
    json.dump(measure(), sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
