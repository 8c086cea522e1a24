"""Question in, grounded answer out: validate, retrieve, decide whether to refuse, answer.

`QAPipeline.from_settings()` builds every collaborator once (index, embedder, keyword index,
answerers); `ask()` is then cheap and thread-safe for reads. The CLI and the Discord bot
only call `ask()`, `documents()` and `reindex()`.
"""

from __future__ import annotations

import logging
import threading
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .answer.answerability import judge
from .answer.extractive import ExtractiveAnswerer
from .answer.question import analyse
from .answer.reader import SpanReader
from .answer.registry import build_llm_answerer
from .conversation import prepare, resolve
from .errors import QabotError
from .index import Index
from .ingest import IngestReport
from .load import corpus_problem, normalize_text
from .retrieve import DenseRetriever, Filters, Hit, HybridRetriever, KeywordIndex, with_more_articles
from .settings import Settings
from .types import Answer, Turn

if TYPE_CHECKING:
    from .answer.llm import LLMAnswerer

log = logging.getLogger(__name__)

#: Chunks read from the start of an article to quote its lead ("summarise the article about…").
SUMMARY_CHUNKS = 2
#: A list question reads the QABOT_TOP_K best chunks and the best two chunks of the best article they leave
#: out, among twice QABOT_TOP_K candidates (with_more_articles). One article, not two: at 100k chunks two
#: put the answer p95 at 173 ms against 140 (the 150 ms budget); one, 142-147 ms (ABAB, 2026-12-07).
LIST_MORE_ARTICLES = 1
LIST_MORE_CHUNKS = 2
LIST_CANDIDATES = 2

REFUSAL = "The articles I have do not cover that, so I won't guess. Try asking about what they report."


class InvalidQuestionError(QabotError):
    """The question cannot be processed as given (empty, too long, control characters)."""


@dataclass(frozen=True)
class DocInfo:
    doc_id: str
    title: str
    date: str
    chunks: int


def validate_question(question: str, max_chars: int) -> str:
    """Return the question ready for retrieval, or raise InvalidQuestionError with a polite reason."""
    if "\x00" in question:
        raise InvalidQuestionError("The question contains NUL bytes; please send plain text.")
    if len(question) > max_chars:
        raise InvalidQuestionError(
            f"The question is {len(question):,} characters long; please keep it under {max_chars:,}."
        )
    # The loader's normalisation (NFC, no invisible or control characters), then no combining marks
    # either: after NFC those are only zalgo-style stacks.
    cleaned = "".join(ch for ch in normalize_text(question) if unicodedata.category(ch) != "Mn")
    cleaned = " ".join(cleaned.split())
    if not any(ch.isalnum() for ch in cleaned):
        raise InvalidQuestionError("Please ask a question in words.")
    return cleaned


class QAPipeline:
    """The whole question-answering pipeline, built once from settings."""

    def __init__(self, settings: Settings, index: Index, llm_answerer: LLMAnswerer | None = None) -> None:
        self.settings = settings
        self.index = index
        # Loaded on the first question, on the asking thread: a loader thread still inside onnxruntime when a
        # one-off command exits (an empty question, an error) crashed the interpreter at teardown.
        self.extractive = ExtractiveAnswerer(index.embedder.with_precision(settings.sentence_precision),
                                             SpanReader.from_settings(settings))
        self.llm = llm_answerer
        self.sync_report: IngestReport | None = None  # what opening the pipeline changed in the index
        self._lock = threading.RLock()  # guards swapping the keyword index on reindex
        self._keyword, self._retriever = self._build_retriever()

    @classmethod
    def from_settings(cls, settings: Settings, *, sync: bool = True, index: Index | None = None) -> QAPipeline:
        """Open the index (building or syncing it from the corpus folder when `sync`) and the answerers."""
        index = index or Index.from_settings(settings, preload=True)
        report = None
        problem = corpus_problem(settings.corpus_dir) if sync else ""
        if problem:
            log.warning("%s; answering from the index as it is", problem.split(";")[0])
        elif sync:
            report = index.sync()
            log.debug("index synced: %s", report.summary())
        if index.store.count() == 0:
            raise QabotError(
                f"the index is empty: put articles in {settings.corpus_dir} (QABOT_CORPUS_DIR) and run `qabot ingest`"
            )
        pipeline = cls(settings, index, build_llm_answerer(settings))
        pipeline.sync_report = report
        return pipeline

    # -- public API -----------------------------------------------------------------------------
    def ask(
        self,
        question: str,
        history: Sequence[Turn] = (),
        filters: Filters = Filters(),
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """Answer one question; `history` holds earlier turns of the same conversation.

        `on_token` is called from a worker thread with each piece of text as an LLM writes it
        (never by the offline answerer); the returned answer is the grounded one either way.
        """
        started = time.perf_counter()
        question = validate_question(question, self.settings.max_question_chars)
        # Offline, resolve() reads the conversation; an LLM's condensed question wins when it gives one.
        resolved = resolve(question, history)
        standalone, query, notice = question, resolved.query, ""
        if history and self.llm is not None:
            standalone, notice = self.llm.condense(question, history)
            query = standalone if standalone != question else query
        vector = self.index.embedder.embed_query(query)
        with self._lock:
            keyword = self._keyword
            if analyse(standalone).kind == "list":  # its items stand in several articles
                hits = with_more_articles(self._retriever.retrieve(query, LIST_CANDIDATES * self.settings.top_k,
                                                                   filters, embedding=vector),
                                          self.settings.top_k, LIST_MORE_ARTICLES, LIST_MORE_CHUNKS)
            else:
                hits = self._retriever.retrieve(query, self.settings.top_k, filters, embedding=vector)
        retrieved = time.perf_counter()
        # The topic chose the chunks (retrieval and the vector); the evidence weighs the words the user
        # asked, so "When?" is judged on the sentences found for its topic, not on the topic's words.
        evidence = self.extractive.evidence(standalone, hits, keyword, vector)
        sides = [self._side_evidence(side, standalone, filters, keyword) for side in evidence.question.sides]
        if sides:  # a comparison is covered when each side is
            evidence.score = min(side.score for side in sides)
        # A follow-up ("When?") is read with its topic, as it is retrieved: alone it asks nothing the reader can find.
        asked = resolved.query if resolved.follow_up and standalone == question else standalone
        reading = self.extractive.read(asked, evidence)
        verdict = judge(evidence.question, evidence.score, reading, min_evidence=self.settings.min_evidence,
                        min_margin=self.settings.min_span_margin)
        if self.settings.refuse and not verdict.answer:
            answer = Answer(question, REFUSAL, refused=True, backend=self.backend_name(), evidence=evidence.score,
                            margin=verdict.margin)
        elif self.llm is not None:
            answer = self.llm.answer(question, standalone, hits, history, keyword, vector, self.extractive,
                                     on_token=on_token, evidence=evidence)
        else:
            answer = self.extractive.answer(standalone, hits, keyword, vector, evidence=evidence, reading=reading,
                                            lead_of=self._document_start, side_evidence=sides)
            if resolved.follow_up and any(answer.text == turn.answer for turn in history):
                # Never an earlier answer word for word: with what was shown demoted, new evidence leads.
                # (Demoting it for every "who else…?" lost turns: the other signer often stands in the
                # sentence already shown; tests/data/conversations.jsonl, 35/36 with, 36/36 without.)
                evidence = self.extractive.evidence(standalone, hits, keyword, vector, shown=resolved.shown)
                answer = self.extractive.answer(standalone, hits, keyword, vector, evidence=evidence,
                                                reading=self.extractive.read(asked, evidence, resolved.shown),
                                                lead_of=self._document_start, side_evidence=sides)
            if answer.refused:
                answer = Answer(question, REFUSAL, refused=True, backend=self.extractive.name, evidence=answer.evidence)
        done = time.perf_counter()
        return Answer(
            question=question,
            text=answer.text,
            sources=answer.sources,
            refused=answer.refused,
            backend=answer.backend,
            notice=" ".join(n for n in (notice, answer.notice) if n),
            timings_ms={
                "retrieve": (retrieved - started) * 1000,
                "answer": (done - retrieved) * 1000,
                "total": (done - started) * 1000,
            },
            retrieved=tuple(dict.fromkeys(h.doc_id for h in hits)),
            evidence=evidence.score,
            margin=verdict.margin,
            llm_use=answer.llm_use,
        )

    def _side_evidence(self, side: str, question: str, filters: Filters, keyword: KeywordIndex):  # -> Evidence
        """The evidence for one side of a comparison: the question asked about that side alone."""
        vector = self.index.embedder.embed_query(f"{side} {question}")
        with self._lock:
            hits = self._retriever.retrieve(side, self.settings.top_k, filters, embedding=vector)
        return self.extractive.evidence(question, hits, keyword, vector, query=side)

    def _document_start(self, doc_id: str) -> list[Hit]:
        """The first chunks of an article, as hits (its lead, for summaries)."""
        ids = [f"{doc_id}#{i}" for i in range(SUMMARY_CHUNKS)]
        return [Hit(c.chunk_id, c.text, c.metadata) for c in self.index.store.get(ids)]

    def prepare_conversations(self) -> threading.Thread:
        """Start loading, in the background, what the first follow-up question needs (spaCy, 1.5-3 s).

        A one-off `ask` never needs it; the chat and the Discord bot call this when they open, so
        the user's first follow-up does not wait for it.
        """
        return prepare()

    def documents(self) -> list[DocInfo]:
        """The indexed documents, by doc_id."""
        markers = self.index.store.markers()
        return [DocInfo(m.doc_id, m.title, m.date, m.n_chunks) for m in sorted(markers.values(), key=lambda m: m.doc_id)]

    def reindex(self) -> IngestReport:
        """Sync the corpus folder into the index and refresh the keyword index."""
        report = self.index.sync()
        keyword, retriever = self._build_retriever()  # built outside the lock: asks go on meanwhile
        with self._lock:
            self._keyword, self._retriever = keyword, retriever
        return report

    def _build_retriever(self) -> tuple[KeywordIndex, HybridRetriever]:
        # Cached on disk under the data folder, named after the documents it holds: at 100,000 chunks
        # loading it takes ~2.6 s where reading and tokenizing the store again took ~23 s.
        cache = self.settings.data_dir / "keyword-index" / self.settings.collection
        keyword = KeywordIndex.from_store(self.index.store, cache_dir=cache)
        return keyword, HybridRetriever(DenseRetriever(self.index.store, self.index.embedder), keyword)

    def backend_name(self) -> str:
        return self.llm.name if self.llm is not None else self.extractive.name
