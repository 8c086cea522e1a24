"""The int8 sentence ranker: one text per onnxruntime call (qabot's way since the knife-edge issue) against
batches of similar length (the way before it), on the same int8 file.

An answer ranks the sentences of its retrieved chunks that are not cached yet (~40 on the dev questions:
5 chunks of ~8 sentences). Batched, a sentence's int8 vector depended on its batch-mates (activations
are quantized per call); alone, it never does. This measures what that costs:

    python -m benchmarks.ranker            # JSON on stdout; run it on a quiet machine

The sentences of our corpus and squad2-dev's are split into groups of `--group` (one answer's worth each), and every group is
embedded both ways, alternately, `--repeats` times; reported are the medians per group, with the threads
qabot uses (QABOT_TORCH_THREADS' default).
"""

from __future__ import annotations

import argparse
import json
import time

from .common import CORPUS, REPO, machine, median

#: Our five articles and the five Wikipedia articles of squad2-dev: ~50 groups of 40 sentences.
FOLDERS = (CORPUS, REPO / "tests" / "data" / "squad2-dev" / "corpus")


def corpus_sentences() -> list[str]:
    from rag.clean import clean_text
    from rag.load import load_corpus
    from rag.text import split_sentences

    out = []
    for folder in FOLDERS:
        for doc in load_corpus(folder, 10_000_000, lambda *_: False).documents:
            text = clean_text(doc.text, doc.meta).text
            out += [text[a:b] for a, b in split_sentences(text) if b - a > 20]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--group", type=int, default=40, help="sentences ranked for one answer")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    from rag.embed import Embedder, resolve_model
    from rag.settings import load_settings

    settings = load_settings(environ={})
    ranker = Embedder(resolve_model(settings.embed_model), torch_threads=settings.torch_threads,
                      precision="int8")
    backend = ranker._impl  # noqa: SLF001 - the onnxruntime session itself, to switch its call shape
    if ranker.runs_precision != "int8":
        raise SystemExit("no int8 copy could be made here: nothing to compare")
    sentences = corpus_sentences()
    groups = [sentences[i:i + args.group] for i in range(0, len(sentences) - args.group + 1, args.group)]
    timings: dict[str, list[float]] = {"per_call": [], "batched": []}
    backend.embed(groups[0], query=False)  # warm-up
    for _ in range(args.repeats):
        for group in groups:
            for way in ("per_call", "batched"):
                backend.one_text_per_call = way == "per_call"
                started = time.perf_counter()
                backend.embed(group, query=False)
                timings[way].append((time.perf_counter() - started) * 1000)
    backend.one_text_per_call = True
    per_call, batched = median(timings["per_call"]), median(timings["batched"])
    print(json.dumps({"sentences_per_answer": args.group, "groups": len(groups), "repeats": args.repeats,
                      "per_call_ms_median": round(per_call, 1), "batched_ms_median": round(batched, 1),
                      "ratio": round(per_call / batched, 2), "parallel_calls": backend.parallel_calls,
                      "machine": machine()}, indent=1))


if __name__ == "__main__":
    main()
