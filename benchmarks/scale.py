"""qabot on large synthetic corpora: ingest time, index size, peak RSS, answer latency.

The index is grown in stages in one data folder, as a user's corpus grows: 2,000 documents
(then re-ingested unchanged), then about 20,000 chunks, then about 100,000. Each stage is a
normal `qabot ingest` that embeds only the new documents, so a size's ingest time is the sum
of the stages up to it. Every stage appends its numbers to `results.json` in the work folder,
so a long run that is interrupted keeps what it measured.

    python -m benchmarks.scale --sizes 20000 100000        # ~1.5-3 h on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path
from typing import Any

from . import synth
from .common import DEV_QUESTIONS, MORE_QUESTIONS, WORK, dir_size_mb, machine, qabot_env, read_questions, run_ingest
from .serve import hit_and_mrr, serve

CHUNKS_PER_DOC = 4.37  # measured on the generator's output with the default chunking (200/40 wordpieces)
N_REAL = 5


def docs_for_chunks(chunks: int) -> int:
    return max(1, math.ceil(chunks / CHUNKS_PER_DOC))


def ingest(env: dict[str, str]) -> dict[str, Any]:
    return run_ingest(env, timeout=6 * 3600)


def fast_fill(corpus: Path, data: Path, tokens: int) -> dict[str, Any]:
    """Index new documents with vectors of only each chunk's first `tokens` wordpieces.

    For the serving measurements at a size whose real build does not fit in the time at hand:
    texts, metadata, BM25 and the HNSW graph are those of a real index of that size, the vectors
    are real embeddings of shorter text (same model, same distribution, not the same values).
    The ingest time of such a stage is not a measurement and is not reported as one.

    Only the vectors are cut short: the sync is the real one, so every chunk also gets the spaCy
    annotation a real ingest stores (metadata `nlp`, rag/nlp.py). Without it the answerer would
    parse each retrieved chunk at question time (`annotation_of`'s fallback) and the serving
    numbers would measure that instead; `chunks_without_nlp` counts such chunks (expected 0).
    """
    from rag.index import Index
    from rag.settings import load_settings

    settings = load_settings(environ={}, corpus_dir=corpus, data_dir=data, torch_threads=0)
    index = Index.from_settings(settings)
    index.embedder._impl.truncate(tokens)
    started = time.perf_counter()
    report = index.sync()
    wall = time.perf_counter() - started
    return {"wall_s": wall, "peak_rss_mb": float("nan"), "documents": report.documents,
            "chunks": report.chunks, "embedded": report.embedded, "sync_s": report.seconds, "fast_fill_tokens": tokens,
            "chunks_without_nlp": chunks_without_annotation(index)}


def chunks_without_annotation(index: Any) -> int:
    """Chunks whose stored spaCy annotation is missing or unreadable (each would be parsed per question)."""
    from rag.nlp import META_KEY, Annotation

    return sum(1 for _, text, meta in index.store.iter_chunks()
               if text and not (isinstance(meta.get(META_KEY), str) and Annotation.from_json(meta[META_KEY])))


def measure_serving(env: dict[str, str], n_synthetic: int = 40) -> dict[str, Any]:
    rows = read_questions(DEV_QUESTIONS, MORE_QUESTIONS)
    synthetic = synth.synthetic_questions(n_synthetic + 3)
    res = serve(env, warmup=synthetic[:3], questions=[r["question"] for r in rows] + synthetic[3:])
    hit, mrr = hit_and_mrr(res.answers[: len(rows)], rows)
    return {**res.stats(), "quoted_hit_at_3": hit, "quoted_mrr": mrr}


class Recorder:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}

    def put(self, key: str, value: Any) -> None:
        self.data[key] = value
        self.data["machine"] = machine()
        self.path.write_text(json.dumps(self.data, indent=2))
        print(f"[scale] {key}: {json.dumps(value)}", flush=True)


def run_scale(sizes: list[int], workdir: Path, reingest_docs: int = 2000, serve_only: bool = False,
              threads: str | None = None, fast_fill_tokens: int = 0) -> dict[str, Any]:
    workdir.mkdir(parents=True, exist_ok=True)
    corpus, data = workdir / "corpus", workdir / "data"
    extra = {"QABOT_TORCH_THREADS": threads} if threads is not None else {}
    env = qabot_env(corpus, data, **extra)
    rec = Recorder(workdir / "results.json")
    total_ingest_s = rec.data.get("_total_ingest_s", 0.0)
    if not serve_only and reingest_docs and "reingest" not in rec.data:
        synth.write_corpus(corpus, reingest_docs - N_REAL)
        first = ingest(env)
        total_ingest_s += first["wall_s"]
        rec.put("docs_2000_ingest", first)
        again = ingest(env)
        rec.put("reingest", again)
        rec.put("_total_ingest_s", total_ingest_s)
    for size in sizes:
        key = f"scale_{size}"
        if not serve_only and key not in rec.data:
            n = docs_for_chunks(size) - N_REAL
            started = time.perf_counter()
            written = synth.write_corpus(corpus, n, keep_existing=True)
            if fast_fill_tokens:
                grown = fast_fill(corpus, data, fast_fill_tokens)
                total_ingest_s = float("nan")
            else:
                grown = ingest(env)
                total_ingest_s += grown["wall_s"]
            rec.put("_total_ingest_s", total_ingest_s)
            stage = {**grown, "files": written, "stage_s": time.perf_counter() - started,
                     "ingest_total_s": total_ingest_s, "index_mb": dir_size_mb(data)}
            rec.put(key, stage)
        if serve_only:
            rec.put(key + "_serve", measure_serving(env))
            continue
        # The first start after an ingest builds the keyword index (and Chroma applies its log);
        # later starts load the cached one: both are what a user sees.
        rec.put(key + "_serve_first_open_after_ingest", measure_serving(env))
        rec.put(key + "_serve", measure_serving(env))
    return rec.data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=WORK / "scale")
    parser.add_argument("--reingest-docs", type=int, default=2000)
    parser.add_argument("--serve-only", action="store_true", help="Measure serving on the existing index only.")
    parser.add_argument("--threads", default=None, help="QABOT_TORCH_THREADS for the runs (default: qabot's).")
    parser.add_argument("--fast-fill-tokens", type=int, default=0,
                        help="Embed only this many wordpieces of each new chunk (serving numbers only; see fast_fill).")
    args = parser.parse_args()
    print(json.dumps(run_scale(args.sizes, args.workdir, args.reingest_docs, args.serve_only, args.threads,
                               args.fast_fill_tokens), indent=2))


if __name__ == "__main__":
    main()
