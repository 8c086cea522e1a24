"""The reader reads the best evidence: which words of which sentence answer, and whether any do.

The evidence ranking (evidence.py) picks the sentences an answer would quote; the span reader
(reader.py) then reads the question against the best few of them, joined in rank order into one
passage (for a list question: each with the sentence before and after it, a few per article), and
says where the answer is and how sure it is. What the reader finds is what the answer leads with;
that it finds nothing is a reason to refuse (answerability.py).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..nlp import annotation_of
from ..retrieve import Hit
from ..text import TERMINAL
from .evidence import Evidence, SentenceEvidence
from .reader import ReaderUnavailable, SpanReader

log = logging.getLogger(__name__)

#: Evidence statements read per question. An accepted answer stands in the best 4 (with their neighbours)
#: for 97 of squad2-dev's 100 answerable questions, and in the best 8 for 98 (measured 2026-12-06); four
#: statements fit one 256-token window.
READ_SENTENCES = 4


@dataclass(frozen=True)
class Found:
    """A span the reader found: where it stands and how sure the reader is."""

    sentence: SentenceEvidence  # the evidence sentence that holds the span's start
    start: int  # offsets in the chunk text (sentence.hit.text)
    end: int
    margin: float  # span score minus "no answer" score (logits)
    rank: int  # rank of the sentence whose passage was read (0 = best evidence)

    @property
    def text(self) -> str:
        return self.sentence.hit.text[self.start:self.end]


@dataclass(frozen=True)
class Reading:
    """What the reader found in the best evidence sentences, most confident first."""

    found: list[Found] = field(default_factory=list)
    min_margin: float = 0.0  # the reader's calibrated answer threshold (reader.json)
    unavailable: str = ""  # why the reader could not read (missing or damaged model), else ""

    @property
    def best(self) -> Found | None:
        return self.found[0] if self.found else None

    @property
    def confident(self) -> list[Found]:
        """The spans the reader stands behind (margin at or above its threshold)."""
        return [f for f in self.found if f.margin >= self.min_margin]


class EvidenceReader:
    """Runs the span reader over an `Evidence`'s best sentences; answers fall back when it cannot load."""

    def __init__(self, reader: SpanReader) -> None:
        self.reader = reader
        self._warned = False

    def read(self, question: str, ev: Evidence, sentences: int = READ_SENTENCES, per_article: int = 0,
             skip: Sequence[str] = ()) -> Reading:
        """Read the best `sentences` statements together, as one passage in evidence order (one answer), or,
        with `per_article`, each with its neighbours and at most that many of one article (list items).
        Sentences in `skip` (already shown in this conversation) are not read."""
        chosen: list[SentenceEvidence] = []
        skipped = {" ".join(x.split()) for x in skip}
        for s in ev.sentences:
            if len(chosen) >= sentences:
                break
            if not _statement(s.text, s.hit) or (per_article and sum(c.doc_id == s.doc_id for c in chosen) >= per_article):
                continue
            if " ".join(s.text.split()) in skipped:
                continue
            chosen.append(s)
        if not chosen:
            return Reading()
        try:
            found = self._apart(question, ev, chosen) if per_article else self._together(question, chosen)
            min_margin = self.reader.config.min_margin
        except ReaderUnavailable as exc:
            if not self._warned:
                log.warning("%s; answers quote whole sentences until it is fixed", exc)
                self._warned = True
            return Reading(unavailable=str(exc))
        found.sort(key=lambda f: (-f.margin, f.rank))
        return Reading(found, min_margin)

    def _together(self, question: str, chosen: list[SentenceEvidence]) -> list[Found]:
        """One passage of the sentences, best first: their candidate spans compete in one reading, as the
        reader was trained (a paragraph), so the span it likes best wins, not the passage that happens to
        score highest alone (squad2-dev, news dev sets: the accepted answer led 95 of 129 times, against
        90 reading each sentence with its neighbours apart)."""
        starts, pieces, at = [], [], 0
        for s in chosen:
            starts.append(at)
            pieces.append(s.text)
            at += len(s.text) + 1
        (span,) = self.reader.read(question, [" ".join(pieces)])
        if span is None or span.end <= span.start:
            return []
        k = max(i for i, st in enumerate(starts) if st <= span.start)
        s = chosen[k]
        start, end = _whole_names(s, s.start + span.start - starts[k], min(s.end, s.start + span.end - starts[k]))
        return [Found(s, start, end, span.margin, k)]

    def _apart(self, question: str, ev: Evidence, chosen: list[SentenceEvidence]) -> list[Found]:
        """Each sentence read with its neighbours, on its own: one span per passage (the items of a list)."""
        passages = [_passage(s) for s in chosen]
        spans = self.reader.read(question, [text for text, _ in passages])
        found: list[Found] = []
        for rank, (s, (_, offset), span) in enumerate(zip(chosen, passages, spans, strict=True)):
            if span is None or span.end <= span.start:
                continue
            start, end = offset + span.start, offset + span.end
            holder = _holder(s, ev.sentences, start) or s
            start, end = _whole_names(holder, start, min(end, holder.end))
            found.append(Found(holder, start, end, span.margin, rank))
        return found


def _whole_names(s: SentenceEvidence, start: int, end: int) -> tuple[int, int]:
    """The span widened to hold whole any name it cuts (chunk offsets, within the sentence).

    The reader marks wordpieces and sometimes stops inside a name ("Commission v" of "Commission v
    Austria"); a lead that cuts a name reads as broken. The names are the entities spaCy found at
    ingest (rag/nlp.py); of those a boundary falls inside, the shortest decides. Only entities: widening
    to whole noun phrases made leads twice as long (squad2-dev median 3 -> 6 words, lead F1 0.70 -> 0.61).
    On 1,000 held-out training examples, entities only: the span holds the answer 0.789 -> 0.802, F1
    0.675 -> 0.663.
    """
    names = [c for c in annotation_of(s.hit.text, s.hit.metadata).candidates
             if c.label and s.start <= c.start and c.end <= s.end]
    cut_start = [c for c in names if c.start < start < c.end]
    cut_end = [c for c in names if c.start < end < c.end]
    if cut_start:
        start = min(cut_start, key=lambda c: c.end - c.start).start
    if cut_end:
        end = min(cut_end, key=lambda c: c.end - c.start).end
    return start, end


def _statement(text: str, hit: Hit) -> bool:
    """A sentence that states something: not the headline, not a label ("Why the cuts")."""
    return text.rstrip().endswith(TERMINAL) and text.strip() != str(hit.metadata.get("title", "")).strip()


def _passage(s: SentenceEvidence) -> tuple[str, int]:
    """The sentence with the statement before and the one after it in its chunk: (text, offset in the chunk)."""
    sentences = annotation_of(s.hit.text, s.hit.metadata).sentences
    start, end = s.start, s.end
    if 0 < s.position <= len(sentences):
        before = sentences[s.position - 1]
        if _statement(s.hit.text[before.start:before.end], s.hit):
            start = min(start, before.start)
    if s.position + 1 < len(sentences):
        after = sentences[s.position + 1]
        if _statement(s.hit.text[after.start:after.end], s.hit):
            end = max(end, after.end)
    return s.hit.text[start:end], start


def _holder(s: SentenceEvidence, sentences: Sequence[SentenceEvidence], at: int) -> SentenceEvidence | None:
    """The gathered sentence of `s`'s chunk that holds chunk offset `at`."""
    for other in sentences:
        if other.hit is s.hit and other.start <= at < other.end:
            return other
    return None
