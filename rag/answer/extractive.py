"""The offline answerer: quote the sentences of the retrieved chunks that answer best.

It writes nothing that is not in a source: the answer is made of whole sentences from the
articles, each followed by its [n] citation. Sentences are scored by embedding similarity to
the question plus the idf weight of the question's words they contain; near-duplicates
(overlapping chunks, articles quoting the same statement) are dropped.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..embed import Embedder
from ..retrieve import Hit, KeywordIndex
from ..text import split_sentences, terms
from ..types import Answer, Source

_TERMINAL = tuple('.!?…"”’\')')
_NUMBER = re.compile(r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|dozens?|hundreds?|thousands?|millions?|billions?)\b", re.I)
_TIME = re.compile(
    r"\b(monday|tuesday|wednesday|thursday|friday|saturday|sunday|january|february|march|april|may|june|july"
    r"|august|september|october|november|december|yesterday|today|tomorrow|week|month|year|(19|20)\d\d)\b",
    re.I,
)
_PROPER = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-zA-Z]+")
_PRONOUN_START = re.compile(r"^(he|she|they|it|this|these|those|that|his|her|their|its)\b", re.I)
_MIN_WORDS = 3


@dataclass
class Candidate:
    text: str
    hit: Hit
    hit_rank: int
    start: int  # offset in the chunk text
    position: int  # sentence index within the chunk
    score: float = 0.0
    keywords: float = 0.0
    vector: np.ndarray | None = None
    follow: Candidate | None = None  # the next sentence, quoted together with this one


class SentenceEmbeddingCache:
    """Sentence vectors by text: the same chunks come back for related questions."""

    def __init__(self, embedder: Embedder, size: int = 4096) -> None:
        self.embedder = embedder
        self.size = size
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()

    def embed(self, texts: Sequence[str]) -> list[np.ndarray]:
        missing = list(dict.fromkeys(t for t in texts if t not in self._cache))
        if missing:
            for text, vec in zip(missing, self.embedder.embed_documents(missing)):
                self._cache[text] = np.asarray(vec, dtype=np.float32)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        for t in texts:
            self._cache.move_to_end(t)
        return [self._cache[t] for t in texts]


class ExtractiveAnswerer:
    """Answers with verbatim sentences from the sources, needing no model server."""

    name = "extractive"

    def __init__(self, embedder: Embedder, max_sentences: int = 3, relative_cutoff: float = 0.3) -> None:
        self.sentences = SentenceEmbeddingCache(embedder)
        self.max_sentences = max_sentences
        self.relative_cutoff = relative_cutoff

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        keyword_index: KeywordIndex,
        question_vector: Sequence[float],
        context_question: str = "",
    ) -> Answer:
        """Pick the best sentences; `context_question` (the previous turn) adds its words at half weight."""
        candidates = self._candidates(hits)
        if not candidates:
            return Answer(question, "", refused=True, backend=self.name)
        qv = np.asarray(question_vector, dtype=np.float32)
        vectors = self.sentences.embed([c.text for c in candidates])
        weights = {t: keyword_index.idf(t) for t in set(terms(question))}
        for t in set(terms(context_question)) - set(weights):
            weights[t] = 0.5 * keyword_index.idf(t)
        total = sum(weights.values()) or 1.0
        expects = expected_answer_type(question)
        for c, vec in zip(candidates, vectors):
            c.vector = vec
            c_terms = set(terms(c.text))
            c.keywords = sum(w for t, w in weights.items() if t in c_terms) / total
            c.score = float(qv @ vec) + 0.6 * c.keywords + 0.02 / (1 + c.hit_rank)
            if not c.text.rstrip().endswith(_TERMINAL) or c.text == c.hit.metadata.get("title"):
                c.score -= 0.15  # headlines and labels rarely answer; their sentences do
            if expects and _has_answer_type(c.text, question, expects):
                c.score += 0.08
        ranked = sorted(candidates, key=lambda c: c.score, reverse=True)
        best = ranked[0]
        chosen = [best]
        # The sentence after the best one often completes it ("…, he added", "The official described
        # the approach as …"): quote it with the best one when it shares a word with the question.
        by_position = {(c.hit.chunk_id, c.position): c for c in candidates}
        follow = by_position.get((best.hit.chunk_id, best.position + 1))
        if follow is not None and follow.keywords > 0 and not _redundant(follow, best):
            best.follow = follow
        used = {id(best), id(follow) if best.follow else None}
        for c in ranked[1:]:
            if len(chosen) >= self.max_sentences or c.score < best.score - self.relative_cutoff:
                break
            if id(c) in used or any(_redundant(c, other) for other in chosen):
                continue
            chosen.append(c)
        return self._compose(question, chosen, hits)

    def best_quote(self, question_vector: Sequence[float], question: str, hit: Hit, keyword_index: KeywordIndex) -> str:
        """The sentence of one chunk that best matches the question (used to quote LLM sources)."""
        answer = self.answer(question, [hit], keyword_index, question_vector)
        return answer.sources[0].quote if answer.sources else ""

    # -- internals ------------------------------------------------------------------------------
    def _candidates(self, hits: Sequence[Hit]) -> list[Candidate]:
        seen: set[tuple[str, int]] = set()
        out: list[Candidate] = []
        for rank, hit in enumerate(hits):
            chunk_start = int(hit.metadata.get("start", 0))
            for position, (s, e) in enumerate(split_sentences(hit.text)):
                key = (hit.doc_id, chunk_start + s)  # overlapping chunks repeat sentences
                text = hit.text[s:e]
                if key in seen or (len(text.split()) < _MIN_WORDS and not text.endswith(".")):
                    continue
                seen.add(key)
                out.append(Candidate(text, hit, rank, s, position))
        return out

    def _compose(self, question: str, chosen: list[Candidate], hits: Sequence[Hit]) -> Answer:
        numbers: dict[str, int] = {}
        quotes: dict[str, list[tuple[int, str]]] = {}  # per document: (offset, text), read in order
        parts: list[str] = []
        for c in chosen:
            doc = c.hit.doc_id
            n = numbers.setdefault(doc, len(numbers) + 1)
            text = _with_context(c)
            if c.follow is not None:
                text = f"{text} {c.follow.text}"
            offset = int(c.hit.metadata.get("start", 0)) + c.start
            quotes.setdefault(doc, []).append((offset, text))
            parts.append(f"{text} [{n}]")
        by_doc = {}
        for c in chosen:
            by_doc.setdefault(c.hit.doc_id, c)
        sources = tuple(
            Source(
                n=n,
                doc_id=doc,
                title=str(by_doc[doc].hit.metadata.get("title", "")),
                date=str(by_doc[doc].hit.metadata.get("date", "")),
                url=str(by_doc[doc].hit.metadata.get("url", "")),
                quote=" … ".join(text for _, text in sorted(quotes[doc])),
                score=round(by_doc[doc].hit.dense, 4),
                chunk_id=by_doc[doc].hit.chunk_id,
            )
            for doc, n in numbers.items()
        )
        return Answer(question, " ".join(parts), sources, backend=self.name)


def expected_answer_type(question: str) -> str:
    """What kind of answer a wh-question asks for: number, time, name, or "" when it is open."""
    q = question.lower()
    if re.search(r"\bhow (many|much|long|old|far|big)\b|\bwhat (number|percentage|amount)\b", q):
        return "number"
    if re.search(r"\bwhen\b|\bwhat (day|date|year|month|time)\b", q):
        return "time"
    if re.search(r"\b(who|whom|whose|where)\b|\bwhich (city|country|countries|agency|agencies|company|companies|organi[sz]ations?|news agency|person|people|minister|ministers|official)\b", q):
        return "name"
    return ""


def _has_answer_type(sentence: str, question: str, kind: str) -> bool:
    """Whether the sentence holds something of the expected kind that the question does not already say."""
    q_words = set(re.findall(r"\w+", question.lower()))
    if kind == "number":
        return any(m.group(0).lower() not in q_words for m in _NUMBER.finditer(sentence))
    if kind == "time":
        return any(m.group(0).lower() not in q_words for m in _TIME.finditer(sentence))
    return any(m.group(0).lower() not in q_words for m in _PROPER.finditer(sentence))


def _redundant(a: Candidate, b: Candidate) -> bool:
    if a.vector is not None and b.vector is not None and float(a.vector @ b.vector) > 0.9:
        return True
    ta, tb = set(terms(a.text)), set(terms(b.text))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) > 0.6


def _with_context(c: Candidate) -> str:
    """Give a sentence the subject it leans on: "He said…" or "Dan is…" after a byline "Dan Oliver".

    The added text is the nearest earlier line of the same chunk that names the subject,
    joined with " … " so the quote still verifies fragment by fragment.
    """
    sentences = split_sentences(c.hit.text)
    earlier = [c.hit.text[s:e] for s, e in sentences[: c.position]]
    first_word = c.text.split()[0].strip("“\"'")
    author = str(c.hit.metadata.get("author", ""))
    if author and first_word == author.split()[0] and author not in c.text:
        if author in earlier:
            return f"{author} … {c.text}"
    if _PRONOUN_START.match(c.text) and earlier:
        previous = earlier[-1]
        if len(previous.split()) >= _MIN_WORDS:
            return f"{previous} {c.text}" if c.position and _adjacent(c, previous) else f"{previous} … {c.text}"
    return c.text


def _adjacent(c: Candidate, previous: str) -> bool:
    """Whether `previous` directly precedes the candidate in the chunk (only whitespace between)."""
    before = c.hit.text[: c.start].rstrip()
    return before.endswith(previous)
