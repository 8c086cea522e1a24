"""The values that cross from `rag` to its callers: answers, their sources, conversation turns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Source:
    """One numbered source of an answer, with the quote taken from it."""

    n: int  # the number used in [n] citations
    doc_id: str  # file name relative to the corpus folder, as in the index
    title: str
    date: str
    url: str
    quote: str  # verbatim text from the article (checked), or "" when none could be verified
    score: float  # retrieval score of the chunk the quote comes from
    verified: bool = True  # False: the quote could not be found in the source and must be shown as such
    chunk_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "doc_id": self.doc_id,
            "title": self.title,
            "date": self.date,
            "url": self.url,
            "quote": self.quote,
            "score": round(self.score, 4),
        }


@dataclass(frozen=True)
class Answer:
    """What qabot says to a question: text with [n] citations and the sources they point to."""

    question: str
    text: str
    sources: tuple[Source, ...] = ()
    refused: bool = False
    backend: str = "extractive"
    notice: str = ""  # shown to the user, e.g. "the LLM timed out; this is the offline answer"
    timings_ms: dict[str, float] = field(default_factory=dict)
    retrieved: tuple[str, ...] = ()  # doc_ids in retrieval rank order (for evaluation, not shown)
    #: How well the articles cover the question, 0..1 (see rag/answer/evidence.py); a question is
    #: refused when this is under QABOT_MIN_EVIDENCE. Kept on refused answers too, for `qabot eval`.
    evidence: float = 1.0
    #: The span reader's best margin (span score minus "no answer", logits; see rag/answer/answerability.py),
    #: None when the reader was not asked. For `qabot eval`'s trade-off, not shown.
    margin: float | None = None
    #: What became of an LLM's reply: "as written" (every sentence cited by the model to a source that
    #: supports it), "attributed" (qabot placed or moved the citations, or left out unsupported sentences),
    #: "fallback: <reason>" (the offline answer was given); "" when no LLM was asked.
    llm_use: str = ""

    def shows_quote(self, source: Source) -> bool:
        """Whether the answer text already shows the source's quote (then a source list need not repeat it)."""
        plain = " ".join(self.text.replace("**", "").split())
        parts = [" ".join(p.split()) for p in source.quote.split(" … ") if p.strip()]
        return bool(parts) and all(p in plain for p in parts)

    def to_json(self) -> dict[str, Any]:
        """The public JSON contract of `qabot ask --json` (documented in the README)."""
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "sources": [s.to_json() for s in self.sources],
            "backend": self.backend,
            "notice": self.notice,
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of a conversation, used to understand follow-up questions."""

    question: str
    answer: str = ""
