"""The offline answerer: the answer first, as the span the reader found, then the sentence that holds it.

It writes nothing that is not in a source. The span reader (reader.py, via reading.py) reads the best
evidence sentences and finds the words that answer ("Mike Pence and Mateusz Morawiecki"); the answer
leads with them, cited, then quotes the sentence they stand in with the span in **bold**. When the
reader is not sure, the answer leads with the best sentence whole. List questions gather the spans
found across articles, comparisons quote each side, "summarise…" quotes the article's lead, and
"who wrote the article…" leads with its byline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from ..embed import Embedder
from ..nlp import Candidate, annotation_of
from ..retrieve import Hit, KeywordIndex
from ..text import TERMINAL, terms
from ..types import Answer, Source
from .evidence import Evidence, SentenceEmbeddingCache, SentenceEvidence, coverage, gather, names, neighbour, sentences_of
from .question import Question, analyse
from .reader import SpanReader
from .reading import READ_SENTENCES, EvidenceReader, Found, Reading

#: Quotes besides the one holding the answer: the sentence after it when it goes on about the
#: question, and at most this many other sentences within RELATIVE_CUTOFF of the best one's score.
MORE_SUPPORT = 1
RELATIVE_CUTOFF = 0.3
#: A list question gathers at most this many items, read from this many evidence sentences, and only from
#: sentences that cover the question at least this share as well as the best one does ("Which countries
#: have signed…" is answered by each article's "X signed…", not by a sentence that merely names a country;
#: kept from the rule-based answerer, where it was measured on the news dev sets).
MAX_LIST_ITEMS = 5
LIST_SENTENCES = 8
LIST_COVERAGE_SHARE = 0.5
#: An item after the first must be one the reader finds likelier than "no answer" in its passage (margin
#: above 0 logits), not merely above the calibrated threshold that keeps a single answer from a false
#: refusal: a wrong extra item costs more than a missing one ("…the daily Handelsblatt" beside the ministers).
LIST_MORE_MARGIN = 0.0
#: "summarise the article…" quotes this many sentences of the article's start.
SUMMARY_SENTENCES = 3
#: Kinds whose answer is a sentence, not a span: the reader is not asked.
SENTENCE_KINDS = frozenset({"yesno", "compare", "summary"})

#: The words that join names in a coordination ("the US and Poland", "Britain, France as well as Italy").
_NAME_JOINERS = frozenset({"and", "or", "the", "both", "as", "well", "plus", "along", "with"})

_PRONOUN_START = re.compile(r"^(he|she|they|it|this|these|those|that|his|her|their|its)\b", re.I)

LeadOf = Callable[[str], Sequence[Hit]]  # doc_id -> its first chunks (for summaries)


@dataclass
class _Part:
    """One cited piece of the answer text; `span` marks the answer inside its sentence (chunk offsets)."""

    text: str
    sentence: SentenceEvidence
    span: tuple[int, int] | None = None


class ExtractiveAnswerer:
    """Answers with verbatim text from the sources, needing no model server."""

    name = "extractive"

    def __init__(self, embedder: Embedder, reader: SpanReader | None = None) -> None:
        self.sentences = SentenceEmbeddingCache(embedder)
        self.reader = EvidenceReader(reader or SpanReader())

    def evidence(
        self,
        question: str,
        hits: Sequence[Hit],
        keyword_index: KeywordIndex,
        question_vector: Sequence[float],
        *,
        shown: Sequence[str] = (),
        query: str = "",
    ) -> Evidence:
        """The ranked evidence sentences and how well they cover the question (see evidence.py)."""
        return gather(analyse(question), hits, keyword_index, question_vector, self.sentences, shown, query)

    def read(self, question: str, ev: Evidence, shown: Sequence[str] = ()) -> Reading:
        """What the span reader finds in the best evidence sentences (nothing for sentence-kind questions);
        `shown`: sentences this conversation has quoted already, not read again."""
        if ev.question.kind in SENTENCE_KINDS or ev.question.kind == "byline":
            return Reading()
        if ev.question.kind == "list":  # the items stand in several articles: read the best two of each
            return self.reader.read(question, ev, LIST_SENTENCES, per_article=2, skip=shown)
        return self.reader.read(question, ev, READ_SENTENCES, skip=shown)

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        keyword_index: KeywordIndex,
        question_vector: Sequence[float],
        *,
        evidence: Evidence | None = None,
        reading: Reading | None = None,
        shown: Sequence[str] = (),
        lead_of: LeadOf | None = None,
        side_evidence: Sequence[Evidence] = (),
    ) -> Answer:
        """The answer from `evidence` and what the reader found in it (both computed here when not given).

        `lead_of(doc_id)` returns an article's first chunks, for summaries; `side_evidence` holds
        the evidence gathered for each side of a comparison.
        """
        ev = evidence or self.evidence(question, hits, keyword_index, question_vector, shown=shown)
        if ev.best is None:
            return Answer(question, "", refused=True, backend=self.name, evidence=0.0)
        found = reading if reading is not None else self.read(question, ev)
        q = ev.question
        if q.kind == "summary" and lead_of is not None:
            parts, support = self._summary(ev, lead_of), []
        elif q.kind == "compare" and side_evidence:
            parts, support = self._comparison(side_evidence), []
        elif q.kind == "list":
            parts, support = self._list(ev, found)
        elif q.kind == "byline":
            parts, support = self._byline(ev, found, lead_of)
        else:
            parts, support = self._single(ev, found)
        return self._compose(question, parts, support, ev.score)

    def best_quote(self, question_vector: Sequence[float], question: str, hit: Hit, keyword_index: KeywordIndex) -> str:
        """The sentence of one chunk that best matches the question (used to quote LLM sources)."""
        ev = self.evidence(question, [hit], keyword_index, question_vector)
        return ev.best.text if ev.best is not None else ""

    # -- the kinds of answer ----------------------------------------------------------------------
    def _single(self, ev: Evidence, reading: Reading) -> tuple[list[_Part], list[_Part]]:
        """The reader's span, cited, then its sentence with the span in bold; else the best sentence whole."""
        best = ev.best
        assert best is not None
        confident = reading.confident  # empty for sentence kinds: read() does not ask the reader
        if not confident:
            return [_Part(best.text, best)], [_Part(s.text, s) for s in _next_sentence(ev, best) + _more_support(ev, best)]
        top = confident[0]
        held = top.sentence
        support = [_Part(held.text, held, (top.start, top.end))]
        support += [_Part(s.text, s) for s in _next_sentence(ev, held) + _more_support(ev, held)]
        return [_Part(_full_author(top.text, held), held)], support

    def _list(self, ev: Evidence, reading: Reading) -> tuple[list[_Part], list[_Part]]:
        """The spans the reader found across the best sentences (of any article), each once."""
        items: list[Found] = []
        seen: list[set[str]] = []
        best = ev.best
        assert best is not None
        floor = LIST_COVERAGE_SHARE * coverage(ev.question, best)
        for f in reading.confident:
            if coverage(ev.question, f.sentence) < floor or (items and f.margin < LIST_MORE_MARGIN):
                continue  # a sentence that merely names a country does not say it signed
            if items and not _names_any(f.sentence, ev.question):
                continue  # "…sign contracts with suppliers from countries like China" does not say with whom
            names_in_span = _entities_in(f)
            f = _without_asked_names(f, names_in_span, ev.question)
            if not _of_asked_type(f, names_in_span, ev.question):
                continue  # "Which countries…?" is not answered by "the EU"
            key = set(terms(f.text))
            # "Poland" and "US-Poland" name one item: a span whose words hold another's (or are held by it) is not new
            if not key or any(key <= k or k <= key for k in seen) or any(f.sentence is i.sentence for i in items):
                continue
            seen.append(key)
            items.append(f)
            if len(items) >= MAX_LIST_ITEMS:
                break
        if not items:
            return self._single(ev, reading)
        items.sort(key=lambda f: f.rank)  # in evidence order: the best-supported item first
        return ([_Part(f.text, f.sentence) for f in items],
                [_Part(f.sentence.text, f.sentence, (f.start, f.end)) for f in items])

    def _byline(self, ev: Evidence, reading: Reading, lead_of: LeadOf | None) -> tuple[list[_Part], list[_Part]]:
        """The author of the article the question is about, quoted where the article names them.

        The name comes from the article's metadata (its byline, rag/clean.py) but is cited where it
        stands in the text ("By Lena Marsh"), so it verifies like any quote; an article whose text
        never names its author is answered from its sentences as usual.
        """
        best = ev.best
        assert best is not None
        author = str(best.hit.metadata.get("author", "")).strip()
        if not author:
            return self._single(ev, reading)
        pool = [s for s in ev.sentences if s.doc_id == best.doc_id]
        if lead_of is not None:
            pool += sentences_of(lead_of(best.doc_id))
        # the byline's full name, else an author block that starts with the first name ("Chris joined…")
        first = author.split()[0]
        named = next((s for s in pool if author in s.text), None)
        said = author
        if named is None:
            named = next((s for s in pool if s.text.split()[:1] == [first]), None)
            said = first
        if named is None:
            return self._single(ev, reading)
        at = named.start + named.text.index(said)
        return [_Part(author, named)], [_Part(named.text, named, (at, at + len(said)))]

    def _comparison(self, sides: Sequence[Evidence]) -> list[_Part]:
        """One sentence per side, each cited: the reader compares what the articles say."""
        parts: list[_Part] = []
        for ev in sides:
            s = next((s for s in ev.sentences if all(s is not p.sentence for p in parts)), None)
            if s is not None:
                parts.append(_Part(s.text, s))
        return parts

    def _summary(self, ev: Evidence, lead_of: LeadOf) -> list[_Part]:
        """The start of the article the question is about, sentence by sentence."""
        best = ev.best
        assert best is not None
        first = lead_of(best.doc_id)
        if not first:
            return [_Part(best.text, best)]
        title = str(best.hit.metadata.get("title", ""))
        ordered = sorted(sentences_of(first), key=lambda s: s.offset)
        body = [s for s in ordered if s.text != title and len(s.text.split()) >= 6][:SUMMARY_SENTENCES]
        return [_Part(s.text, s) for s in body] or [_Part(best.text, best)]

    # -- composing ----------------------------------------------------------------------------------
    def _compose(self, question: str, parts: list[_Part], support: list[_Part], score: float) -> Answer:
        """The lead (its parts, cited), then each supporting quote once, the answer span in bold.

        A quote that an earlier one already holds (the same sentence, or a sentence quoted with the one
        before it) is not shown again, and each source lists its quotes once, in article order.
        """
        numbers: dict[str, int] = {}
        quotes: dict[str, list[tuple[int, int, str]]] = {}  # per article: (start, end, text), in order
        by_doc: dict[str, SentenceEvidence] = {}

        def cite(s: SentenceEvidence, quote: tuple[int, str]) -> int:
            n = numbers.setdefault(s.doc_id, len(numbers) + 1)
            by_doc.setdefault(s.doc_id, s)
            start, text = quote
            end = s.offset + len(s.text)
            kept = quotes.setdefault(s.doc_id, [])
            # Quotes of one article are shown in article order and must verify in that order: of two
            # that overlap (a sentence, and the same sentence quoted with the one before it) the
            # longer one stays.
            overlapping = [q for q in kept if q[0] < end and start < q[1]]
            if all(q[1] - q[0] < end - start for q in overlapping):
                kept[:] = [q for q in kept if q not in overlapping] + [(start, end, text)]
            return n

        lead_texts = []
        for part in parts:
            n = cite(part.sentence, _with_context(part.sentence))
            lead_texts.append(f"{part.text} [{n}]")
        lines = ["; ".join(lead_texts) if len(parts) > 1 and all(len(p.text.split()) <= 6 for p in parts)
                 else " ".join(lead_texts)]
        whole = {(p.sentence.doc_id, p.sentence.offset) for p in parts if p.text == p.sentence.text}
        shown: list[tuple[_Part, int, int, str]] = []  # (part, start, end, quote) in the order shown
        for part in support:
            s = part.sentence
            if (s.doc_id, s.offset) in whole:
                continue  # the lead is this sentence already
            start, text = _with_context(s)
            end = s.offset + len(s.text)
            if any(p.sentence.doc_id == s.doc_id and a <= start and end <= b for p, a, b, _ in shown):
                continue  # shown already, maybe with the sentence before it
            inside = [x for x in shown if x[0].sentence.doc_id == s.doc_id and start <= x[1] and x[2] <= end]
            span = part.span or next((x[0].span for x in inside if x[0].span), None)
            shown = [x for x in shown if x not in inside]
            cite(s, (start, text))
            shown.append((_Part(part.text, s, span), start, end, text))
        for part, _, _, text in shown:
            lines.append(f"“{_bold(text, part.sentence, part.span)}” [{numbers[part.sentence.doc_id]}]")
        sources = tuple(
            Source(
                n=n,
                doc_id=doc,
                title=str(by_doc[doc].hit.metadata.get("title", "")),
                date=str(by_doc[doc].hit.metadata.get("date", "")),
                url=str(by_doc[doc].hit.metadata.get("url", "")),
                quote=" … ".join(text for _, _, text in sorted(quotes[doc])),
                score=round(by_doc[doc].hit.dense, 4),
                chunk_id=by_doc[doc].hit.chunk_id,
            )
            for doc, n in numbers.items()
        )
        return Answer(question, "\n\n".join(lines), sources, backend=self.name, evidence=score)


def _entities_in(f: Found) -> list[Candidate]:
    """The entities spaCy found at ingest that stand wholly inside the span (the chunk's stored annotation is
    parsed once per item: both list checks below use these)."""
    return [c for c in annotation_of(f.sentence.hit.text, f.sentence.hit.metadata).candidates
            if c.label and f.start <= c.start and c.end <= f.end]


def _without_asked_names(f: Found, inside: Sequence[Candidate], question: Question) -> Found:
    """A list item without the names the question itself gives: asked "Which countries signed with the US?",
    the reader marks "The US and Poland" (the whole subject of "…signed"), and the item is "Poland". Only a
    span of names joined ("A and B", "A, B & C") is cut; `inside` are the span's entities (`_entities_in`)."""
    text = f.sentence.hit.text
    between = text[f.start:f.end]
    for c in sorted(inside, key=lambda c: -c.start):
        between = between[:c.start - f.start] + " " + between[c.end - f.start:]
    if any(w.lower() not in _NAME_JOINERS for w in re.findall(r"\w+", between)):
        return f  # "…policies of the Yuan Emperors…": a phrase with names in it, not names joined
    asked = [c for c in inside if any(names(key, text[c.start:c.end]) for key in question.key_words)]
    rest = [c for c in inside if c not in asked]
    if not asked or not rest:
        return f
    return replace(f, start=rest[0].start, end=rest[-1].end)


def _names_any(s: SentenceEvidence, question: Question) -> bool:
    """Whether the sentence names one of the question's names or numbers (true when it asks for none): an item
    of "Which countries signed with the US?" stands in a sentence about the US, not in any sentence with a
    country and "sign" in it."""
    return not question.key_words or any(names(key, s.text) for key in question.key_words)


def _of_asked_type(f: Found, entities: Sequence[Candidate], question: Question) -> bool:
    """Whether a list item is of the type the question asks for ("Which countries…?": a GPE), as far as the
    entities of its span tell (those of `entities` within it): an item with no entity, or a question with no
    type, passes."""
    labels = {c.label for c in entities if f.start <= c.start and c.end <= f.end}
    return not (question.labels and labels) or bool(labels & question.labels)


def _full_author(span: str, s: SentenceEvidence) -> str:
    """The author's full name for a span that is only their first name, in an author block ("Dan is now
    editor-in-chief…" under "Dan Oliver"): the quote shows the name (`_with_context`), so the lead may too."""
    author = str(s.hit.metadata.get("author", "")).strip()
    if author and span.strip() == author.split()[0] and author not in s.text and _with_context(s)[1] != s.text:
        return author
    return span


def _bold(quote: str, s: SentenceEvidence, span: tuple[int, int] | None) -> str:
    """The quote with the answer span (offsets in `s`'s chunk) in Markdown bold.

    Every quote ends where its sentence ends (`_with_context` only puts text before it), so the
    span's place in the quote is counted from there; a span that is not where it should be (another
    chunk's offsets) is left plain rather than bolding the wrong words.
    """
    if span is None:
        return quote
    a = len(quote) - (s.end - span[0])
    b = len(quote) - (s.end - span[1])
    if a < 0 or b > len(quote) or quote[a:b] != s.hit.text[span[0]:span[1]]:
        return quote
    inner = quote[a:b]
    if not inner.strip() or "*" in inner:
        return quote
    a += len(inner) - len(inner.lstrip())
    b -= len(inner) - len(inner.rstrip())
    return f"{quote[:a]}**{quote[a:b]}**{quote[b:]}"


def _next_sentence(ev: Evidence, best: SentenceEvidence) -> list[SentenceEvidence]:
    """The sentence after the best one when it goes on about the question ("…, he added")."""
    s = neighbour(best, ev.sentences, 1)
    if s is None:
        return []
    # a sub-heading is not a sentence that goes on ("…slowed." then "Why the cuts")
    goes_on = s.keywords > 0 and s.text.rstrip().endswith(TERMINAL) and not _redundant(s, best)
    return [s] if goes_on else []


def _more_support(ev: Evidence, held: SentenceEvidence) -> list[SentenceEvidence]:
    """Up to MORE_SUPPORT other sentences that rank near the best and say something new."""
    best = ev.best
    assert best is not None
    chosen = [held]
    for s in ev.sentences:
        if len(chosen) > MORE_SUPPORT or s.score < best.score - RELATIVE_CUTOFF:
            break
        if s is held or any(_redundant(s, other) for other in chosen):
            continue
        chosen.append(s)
    return chosen[1:]


def _redundant(a: SentenceEvidence, b: SentenceEvidence) -> bool:
    if a.vector is not None and b.vector is not None and float(a.vector @ b.vector) > 0.9:
        return True
    ta, tb = set(terms(a.text)), set(terms(b.text))
    return bool(ta and tb) and len(ta & tb) / len(ta | tb) > 0.6


def _with_context(s: SentenceEvidence) -> tuple[int, str]:
    """Give a sentence the subject it leans on: "He said…" quoted after the sentence naming him.

    Returns where the quote starts in the article and the quote. The added text is the sentence
    before it in the same chunk (or the byline naming the author), joined with " … " unless the
    two are adjacent, so the quote still verifies fragment by fragment.
    """
    author = str(s.hit.metadata.get("author", ""))
    text = s.hit.text
    chunk_start = int(s.hit.metadata.get("start", 0))
    first_word = s.text.split()[0].strip("“\"'") if s.text.split() else ""
    if author and first_word == author.split()[0] and author not in s.text:
        at = text.rfind(author, 0, s.start)
        if at >= 0:
            return chunk_start + at, f"{author} … {s.text}"
    if _PRONOUN_START.match(s.text) and s.position > 0:
        before = text[: s.start].rstrip()
        cut = max(before.rfind(". "), before.rfind("\n"))
        previous = before[cut + 1 :].strip() if cut >= 0 else before.strip()
        if len(previous.split()) >= 3:
            at = text.rfind(previous, 0, s.start)
            joined = text[at : s.end]
            return chunk_start + at, joined if "\n\n" not in joined else f"{previous} … {s.text}"
    return s.offset, s.text
