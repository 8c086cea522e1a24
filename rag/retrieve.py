"""Hybrid retrieval: dense (Chroma) and keyword (BM25) rankings fused by reciprocal rank.

Dense search finds paraphrases; BM25 finds names and rare words the small embedding model
blurs. Each retriever is a small class with one `retrieve()`; `HybridRetriever` composes
them and keeps both raw scores on every hit, which the refusal check needs.

BM25 runs on bm25s directly (the library llama-index's BM25Retriever wraps) because the
refusal check needs its document frequencies and per-query filters need its weight mask.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .embed import Embedder
from .store import ChunkStore
from .text import terms

RRF_K = 60  # the constant from Cormack et al. (2009); robust across collections


@dataclass(frozen=True)
class Filters:
    """Restrict retrieval to some documents and/or a date range (inclusive, yyyy-mm-dd)."""

    doc_ids: tuple[str, ...] = ()
    date_from: str = ""
    date_to: str = ""

    def __bool__(self) -> bool:
        return bool(self.doc_ids or self.date_from or self.date_to)

    def chroma_where(self) -> dict[str, Any] | None:
        clauses: list[dict[str, Any]] = []
        if self.doc_ids:
            clauses.append({"doc_id": {"$in": list(self.doc_ids)}})
        if self.date_from:
            clauses.append({"date_int": {"$gte": _date_int(self.date_from)}})
        if self.date_to:
            clauses.append({"date_int": {"$lte": _date_int(self.date_to)}})
        if not clauses:
            return None
        return clauses[0] if len(clauses) == 1 else {"$and": clauses}

    def matches(self, meta: dict[str, Any]) -> bool:
        if self.doc_ids and meta.get("doc_id") not in self.doc_ids:
            return False
        date = int(meta.get("date_int") or 0)
        if self.date_from and not (date and date >= _date_int(self.date_from)):
            return False
        if self.date_to and not (date and date <= _date_int(self.date_to)):
            return False
        return True


def _date_int(iso: str) -> int:
    return int(iso.replace("-", "")[:8].ljust(8, "0"))


@dataclass
class Hit:
    """A retrieved chunk with the evidence from each retriever."""

    chunk_id: str
    text: str
    metadata: dict[str, Any]
    dense: float = 0.0  # cosine similarity (0 when dense search did not return it)
    bm25: float = 0.0  # raw BM25 score (0 when keyword search did not return it)
    rrf: float = 0.0
    ranks: dict[str, int] = field(default_factory=dict)

    @property
    def doc_id(self) -> str:
        return str(self.metadata.get("doc_id", ""))


class DenseRetriever:
    """Nearest chunks by cosine similarity of embeddings, from Chroma."""

    def __init__(self, store: ChunkStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder

    def retrieve(self, query: str, k: int, filters: Filters = Filters(), embedding: list[float] | None = None) -> list[Hit]:
        vector = embedding if embedding is not None else self.embedder.embed_query(query)
        return [
            Hit(c.chunk_id, c.text, c.metadata, dense=c.score)
            for c in self.store.query(vector, k, where=filters.chroma_where())
        ]


class KeywordIndex:
    """BM25 over every chunk (title included), plus the document frequencies of its terms."""

    def __init__(self, ids: list[str], texts: list[str], metas: list[dict[str, Any]]) -> None:
        import bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
        self.ids, self.texts, self.metas = ids, texts, metas
        tokens = [terms(f"{m.get('title', '')}\n{t}") for t, m in zip(texts, metas)]
        self.n_docs = len(ids)
        self.df: Counter[str] = Counter()
        for toks in tokens:
            self.df.update(set(toks))
        self._bm25 = bm25s.BM25()
        if ids:
            self._bm25.index(tokens, show_progress=False)

    @classmethod
    def from_store(cls, store: ChunkStore) -> KeywordIndex:
        ids, texts, metas = [], [], []
        for cid, text, meta in store.iter_chunks():
            ids.append(cid)
            texts.append(text)
            metas.append(meta)
        return cls(ids, texts, metas)

    def idf(self, term: str) -> float:
        """BM25's idf; a term absent from the corpus gets the highest possible weight."""
        df = self.df.get(term, 0)
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def retrieve(self, query: str, k: int, filters: Filters = Filters()) -> list[Hit]:
        q_terms = [t for t in terms(query) if t in self.df]
        if not q_terms or not self.n_docs:
            return []
        mask = None
        if filters:
            mask = np.array([1.0 if filters.matches(m) else 0.0 for m in self.metas])
            if not mask.any():
                return []
        n = min(k, self.n_docs)
        idx, scores = self._bm25.retrieve([q_terms], k=n, show_progress=False, weight_mask=mask, n_threads=1)
        return [
            Hit(self.ids[i], self.texts[i], self.metas[i], bm25=float(s))
            for i, s in zip(idx[0], scores[0])
            if s > 0
        ]


class HybridRetriever:
    """Reciprocal-rank fusion of dense and keyword results."""

    def __init__(self, dense: DenseRetriever, keyword: KeywordIndex, candidates: int = 20) -> None:
        self.dense = dense
        self.keyword = keyword
        self.candidates = candidates

    def retrieve(
        self, query: str, k: int, filters: Filters = Filters(), embedding: list[float] | None = None
    ) -> list[Hit]:
        n = max(self.candidates, k * 3)
        fused: dict[str, Hit] = {}
        for name, hits in (
            ("dense", self.dense.retrieve(query, n, filters, embedding)),
            ("bm25", self.keyword.retrieve(query, n, filters)),
        ):
            for rank, hit in enumerate(hits, start=1):
                merged = fused.setdefault(hit.chunk_id, Hit(hit.chunk_id, hit.text, hit.metadata))
                merged.dense = max(merged.dense, hit.dense)
                merged.bm25 = max(merged.bm25, hit.bm25)
                merged.ranks[name] = rank
                merged.rrf += 1.0 / (RRF_K + rank)
        return sorted(fused.values(), key=lambda h: h.rrf, reverse=True)[:k]


def keyword_coverage(question: str, hits: Sequence[Hit], index: KeywordIndex) -> float:
    """Share of the question's idf weight whose terms occur in the retrieved text (0..1).

    Words the corpus never uses weigh the most, so "How many moons does Jupiter have?"
    scores near 0 even when dense search returns something vaguely similar.
    """
    q_terms = set(terms(question))
    if not q_terms:
        return 0.0
    found: set[str] = set()
    for hit in hits:
        found.update(terms(f"{hit.metadata.get('title', '')}\n{hit.text}"))
    total = sum(index.idf(t) for t in q_terms)
    return sum(index.idf(t) for t in q_terms & found) / total if total else 0.0
