"""Hybrid retrieval: dense (Chroma) and keyword (BM25) rankings fused by reciprocal rank.

Dense search finds paraphrases; BM25 finds names and rare words the small embedding model
blurs. Each retriever is a small class with one `retrieve()`; `HybridRetriever` composes
them and keeps both raw scores on every hit, which the refusal check needs.

BM25 runs on bm25s directly (the library llama-index's BM25Retriever wraps) because the
refusal check needs its document frequencies and per-query filters need its weight mask.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import math
import os
import shutil
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .language import DEFAULT_LANGUAGE, question_languages
from .lean_imports import import_bm25s
from .text import STOPWORDS, TOKEN_PATTERN, terms

if TYPE_CHECKING:
    from .embed import Embedder
    from .store import ChunkStore

log = logging.getLogger(__name__)

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
    """BM25 over every chunk (title included), plus the document frequencies of its terms.

    Built from the store, it keeps no chunk text: terms become integer ids as they are read
    (page by page), only the ids, each chunk's document and date (for filters) stay in memory,
    and the text of the few chunks a query returns is read back from the store. At 100,000
    chunks that is the difference between holding the corpus three times over (tokens, texts,
    metadata) and holding a sparse matrix.
    """

    def __init__(self, ids: list[str], texts: list[str], metas: list[dict[str, Any]]) -> None:
        self._texts: list[str] | None = texts
        self._metas: list[dict[str, Any]] | None = metas
        self._store: ChunkStore | None = None
        self._build(zip(ids, texts, metas))

    @classmethod
    def from_store(cls, store: ChunkStore, cache_dir: Path | None = None) -> KeywordIndex:
        """The index of every chunk in `store`.

        With `cache_dir`, it is saved there and the next process loads it instead of reading
        and tokenizing the whole store again (at 100,000 chunks, seconds instead of tens of
        seconds), as long as the store holds exactly the same documents: the cache is named
        after every document's fingerprint and the chunk count.
        """
        folder = cache_dir / f"bm25-{_store_key(store)}" if cache_dir is not None else None
        if folder is not None and folder.is_dir():
            try:
                return cls._load(folder, store)
            except Exception as exc:  # a cache must never stop a start: any damage means rebuild
                log.warning("keyword index cache %s unreadable (%s: %s); rebuilding it", folder, type(exc).__name__, exc)
                shutil.rmtree(folder, ignore_errors=True)
        index = cls._reading_from(store)
        index._build(store.iter_chunks())
        if folder is not None and index.n_docs and folder.name == f"bm25-{_store_key(store)}":  # unchanged while read
            index._save(folder)
        return index

    def _save(self, folder: Path) -> None:
        """Write the index next to its siblings, atomically; a failure only costs the next start."""
        tmp = folder.with_name(f".{folder.name}.{os.getpid()}.tmp")
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            self._bm25.save(str(tmp), show_progress=False)
            assert isinstance(self.df, _DocFreqs)
            np.save(tmp / "doc_freq.npy", self.df._counts)
            np.save(tmp / "dates.npy", self._dates)
            (tmp / "chunks.json").write_text(json.dumps({"ids": self.ids, "rows_by_doc": self._rows_by_doc, "languages": list(self.languages)}))
            os.replace(tmp, folder)
            for old in folder.parent.glob("bm25-*"):
                if old != folder:
                    shutil.rmtree(old, ignore_errors=True)
            for left in folder.parent.glob(".bm25-*.tmp"):  # from killed processes, not one saving now
                with contextlib.suppress(OSError):
                    if time.time() - left.stat().st_mtime > 3600:
                        shutil.rmtree(left, ignore_errors=True)
        except Exception as exc:  # only costs the next start a rebuild
            log.info("keyword index not cached in %s: %s", folder, exc)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @classmethod
    def _reading_from(cls, store: ChunkStore) -> KeywordIndex:
        """An empty index that keeps no text and reads the chunks it returns from `store`."""
        index = cls.__new__(cls)
        index._texts = index._metas = None
        index._store = store
        return index

    @classmethod
    def _load(cls, folder: Path, store: ChunkStore) -> KeywordIndex:
        bm25s = _bm25s()
        index = cls._reading_from(store)
        chunks = json.loads((folder / "chunks.json").read_text())
        index.ids = chunks["ids"]
        index._rows_by_doc = chunks["rows_by_doc"]
        # Saved before languages: every chunk then was (and still is: same cache key) indexed as English.
        index.languages = tuple(chunks.get("languages", [DEFAULT_LANGUAGE]))
        index.n_docs = len(index.ids)
        index._dates = np.load(folder / "dates.npy")
        index._bm25 = bm25s.BM25.load(str(folder), mmap=True, show_progress=False)
        index.df = _DocFreqs(index._bm25.vocab_dict, np.load(folder / "doc_freq.npy"))
        if len(index._dates) != index.n_docs:
            raise ValueError("inconsistent cache")
        return index

    def _build(self, records: Iterable[tuple[str, str, dict[str, Any]]]) -> None:
        bm25s = _bm25s()
        vocab: dict[str, int] = {}
        rows: list[list[int]] = []  # the ints are the vocabulary's own objects: 8 bytes per token
        self.ids: list[str] = []
        self._rows_by_doc: dict[str, list[int]] = {}
        dates: list[int] = []
        doc_freq: list[int] = []
        languages: set[str] = set()
        for cid, text, meta in records:
            lang = chunk_language(meta)
            languages.add(lang)
            row = [vocab.setdefault(t, len(vocab)) for t in terms(f"{meta.get('title', '')}\n{text}", lang)]
            if len(vocab) > len(doc_freq):
                doc_freq.extend([0] * (len(vocab) - len(doc_freq)))
            for term_id in set(row):
                doc_freq[term_id] += 1
            self._rows_by_doc.setdefault(str(meta.get("doc_id", "")), []).append(len(self.ids))
            self.ids.append(cid)
            dates.append(int(meta.get("date_int") or 0))
            rows.append(row)
        self.n_docs = len(self.ids)
        self.languages: tuple[str, ...] = tuple(sorted(languages)) or (DEFAULT_LANGUAGE,)
        self._dates = np.asarray(dates, dtype=np.int64)
        self.df: Mapping[str, int] = _DocFreqs(vocab, np.asarray(doc_freq, dtype=np.int64))
        # numpy builds the same matrix as scipy would, and bm25s is imported without scipy (rag/lean_imports.py)
        self._bm25 = bm25s.BM25(csc_backend="numpy")
        if rows:
            self._bm25.index(bm25s.tokenization.Tokenized(ids=rows, vocab=vocab), show_progress=False)

    def idf(self, term: str) -> float:
        """BM25's idf; a term absent from the corpus gets the highest possible weight."""
        df = self.df.get(term, 0)
        return math.log(1 + (self.n_docs - df + 0.5) / (df + 0.5))

    def query_languages(self, query: str) -> tuple[str, ...]:
        """The languages of the index that `query` is plausibly written in, likeliest first."""
        return _query_languages(query, self.languages)

    def query_terms(self, query: str) -> list[str]:
        """`query`'s terms in each language it may be written in (see `query_languages`), in order, once each."""
        langs = self.query_languages(query)
        if len(langs) == 1:
            return terms(query, langs[0])
        return list(dict.fromkeys(t for lang in langs for t in terms(query, lang)))

    def retrieve(self, query: str, k: int, filters: Filters = Filters()) -> list[Hit]:
        q_terms = [t for t in self.query_terms(query) if t in self.df]
        if not q_terms or not self.n_docs:
            return []
        mask = None
        if filters:
            mask = self._mask(filters)
            if not mask.any():
                return []
        n = min(k, self.n_docs)
        idx, scores = self._bm25.retrieve([q_terms], k=n, show_progress=False, weight_mask=mask, n_threads=0)
        found = [(int(i), float(s)) for i, s in zip(idx[0], scores[0]) if s > 0]
        # Equal scores (overlapping chunks often tie) in chunk-id order, not in the order Chroma stored them.
        found.sort(key=lambda f: (-f[1], self.ids[f[0]]))
        if self._texts is not None and self._metas is not None:
            return [Hit(self.ids[i], self._texts[i], self._metas[i], bm25=s) for i, s in found]
        assert self._store is not None
        stored = {c.chunk_id: c for c in self._store.get([self.ids[i] for i, _ in found])}
        return [  # a chunk removed since the index was built is skipped
            Hit(c.chunk_id, c.text, c.metadata, bm25=s) for i, s in found if (c := stored.get(self.ids[i]))
        ]

    def _mask(self, filters: Filters) -> np.ndarray:
        """`Filters.matches` for every chunk at once, as bm25s' weight mask."""
        ok = np.ones(self.n_docs, dtype=bool)
        if filters.doc_ids:
            in_docs = np.zeros(self.n_docs, dtype=bool)
            for doc_id in filters.doc_ids:
                in_docs[self._rows_by_doc.get(doc_id, [])] = True
            ok &= in_docs
        if filters.date_from:
            ok &= (self._dates != 0) & (self._dates >= _date_int(filters.date_from))
        if filters.date_to:
            ok &= (self._dates != 0) & (self._dates <= _date_int(filters.date_to))
        return ok.astype(np.float32)


def chunk_language(meta: Mapping[str, Any]) -> str:
    """The language a chunk was indexed in; chunks written before languages were detected are English."""
    return str(meta.get("lang") or DEFAULT_LANGUAGE)


@functools.lru_cache(maxsize=256)
def _query_languages(query: str, languages: tuple[str, ...]) -> tuple[str, ...]:
    # Cached: one question is tokenized by retrieval, the refusal check and the answerer.
    return question_languages(query, languages)


def _bm25s():  # -> the bm25s module
    return import_bm25s()


_CACHE_VERSION = "1"  # bump when the saved layout or what goes into the index changes


class _DocFreqs(Mapping[str, int]):
    """term -> number of chunks containing it, over the vocabulary's ids (no second dict of terms)."""

    def __init__(self, vocab: dict[str, int], counts: np.ndarray) -> None:
        self._vocab = vocab
        self._counts = counts

    def __getitem__(self, term: str) -> int:
        if term not in self:
            raise KeyError(term)
        return int(self._counts[self._vocab[term]])

    def __contains__(self, term: object) -> bool:
        # bm25s adds "" (its empty-document token) to a vocabulary it saves; no chunk has it
        return term in self._vocab and self._vocab[term] < len(self._counts)  # type: ignore[index]

    def __iter__(self) -> Iterator[str]:
        return (t for t in self._vocab if t in self)

    def __len__(self) -> int:
        return len(self._counts)


def _store_key(store: ChunkStore) -> str:
    """Names what the store holds: its collection (new on a rebuild), every document's fingerprint and
    chunk count, and the tokenizer."""
    import Stemmer

    made_by = (f"{_CACHE_VERSION}|{_bm25s().__version__}|{Stemmer.version()}|{TOKEN_PATTERN}|{sorted(STOPWORDS)}"
               f"|{store.collection_id}|{store.count()}")
    markers = store.markers()
    if any(m.lang != DEFAULT_LANGUAGE for m in markers.values()):  # English-only keys are as before languages
        import stopwordsiso

        made_by += f"|stopwordsiso={stopwordsiso.__version__}"
    h = hashlib.sha256(made_by.encode())
    for marker in sorted(markers.values(), key=lambda m: m.doc_id):
        h.update(f"\n{marker.doc_id}\0{marker.doc_hash}\0{marker.n_chunks}".encode())
    return h.hexdigest()[:20]


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
        # Ties (one list's 1st and 3rd against the other's 3rd and 1st) go to the closer meaning.
        return sorted(fused.values(), key=lambda h: (-h.rrf, -h.dense, h.chunk_id))[:k]


def with_more_articles(hits: Sequence[Hit], k: int, more: int, per_article: int) -> list[Hit]:
    """The best `k` hits, then the best `per_article` hits of each of up to `more` articles they leave out.

    A question whose answer is a list ("Which countries have signed…?") may have one item per article, and
    three chunks of the article that ranks best crowd out the next article's. Nothing of the best `k` is
    dropped: a list that stands in one article ("Which organisations were expected…?") keeps its chunks.
    """
    kept = list(hits[:k])
    inside = {h.doc_id for h in kept}
    added: dict[str, int] = {}
    for hit in hits[k:]:
        if hit.doc_id in inside or (hit.doc_id not in added and len(added) >= more):
            continue
        if added.get(hit.doc_id, 0) < per_article:
            added[hit.doc_id] = added.get(hit.doc_id, 0) + 1
            kept.append(hit)
    return kept


def keyword_coverage(question: str, hits: Sequence[Hit], index: KeywordIndex) -> float:
    """Share of the question's idf weight whose terms occur in the retrieved text (0..1).

    Words the corpus never uses weigh the most, so "How many moons does Jupiter have?"
    scores near 0 even when dense search returns something vaguely similar. Each hit is read in
    its own language; a question that may be in several of the index's languages counts in the
    one that covers it best (its words in the other would be stopwords there, not topic).
    """
    found: set[str] = set()
    for hit in hits:
        found.update(terms(f"{hit.metadata.get('title', '')}\n{hit.text}", chunk_language(hit.metadata)))
    best = 0.0
    for lang in index.query_languages(question):
        q_terms = set(terms(question, lang))
        total = sum(index.idf(t) for t in q_terms)
        if total:
            best = max(best, sum(index.idf(t) for t in q_terms & found) / total)
    return best
