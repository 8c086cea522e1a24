"""The offline answerer: the answer first, as a verbatim fragment, then the sentences that hold it.

It writes nothing that is not in a source. For "when did…" it leads with the date the evidence
sentence holds, for "who is X?" with the phrase that describes X ("chief of cabinet at Czech
cybersecurity agency NUKIB"), each cited; then it quotes the supporting sentence(s). When it is
not sure which phrase answers, it leads with the part of the sentence around its best guess
rather than a wrong two-word answer. Why-questions lead with the reason clause, comparisons
quote each side, list questions gather across articles, "summarise…" quotes the article's lead, "who wrote the article…" leads with its byline.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..embed import Embedder
from ..nlp import annotation_of
from ..retrieve import Hit, KeywordIndex
from ..text import STOPWORDS, TERMINAL, terms
from ..types import Answer, Source
from .evidence import Evidence, SentenceEmbeddingCache, SentenceEvidence, Span, coverage, gather, neighbour, sentences_of
from .question import Question, analyse

#: The best candidate leads alone only when it beats the next unrelated candidate of its sentence
#: by this much (span scores are 0..~1); otherwise the lead is the fragment around it. On
#: squad2-dev, leading with every best candidate was right 47% of the time; with this margin the
#: short leads are kept for the clear cases and the rest quote a fragment (see the notes).
CONFIDENT_MARGIN = 0.3
#: ... and only when it stands within this many words of the question's words: "Who was sleeping
#: in tents?" is not answered by the speaker ten words before them ("Tomas Ibarra said 212 people
#: had died and about 18,000 were sleeping in tents"). 3 to 10 gave the same leads on the dev sets.
CONFIDENT_DISTANCE = 5
#: A sentence this short (in words) is its own fragment; a longer one is cut to FRAGMENT_WORDS
#: around the best candidate. Measured on squad2-dev and the news dev sets: 22/15 kept the most
#: answers in the lead at a median lead of 15 words (see the notes for the table).
SHORT_SENTENCE_WORDS = 22
FRAGMENT_WORDS = 15
#: Supporting sentences: the best one, plus others within this score of it (not redundant).
MAX_SUPPORT = 3  # besides the sentence right after the best one, when it goes on about the question
RELATIVE_CUTOFF = 0.3
#: A list question gathers at most this many items, from sentences within LIST_CUTOFF of the best
#: (wider than for one answer: the items of a list stand in sentences that rank lower).
MAX_LIST_ITEMS = 5
LIST_CUTOFF = 0.5
#: ... and from sentences that cover the question about as well as the best one (this share of its
#: coverage): "Which countries have signed…" is answered by each article's "X signed…", not by a
#: sentence that merely names a country. A first item that is itself a list ("China and Russia") is
#: the whole answer.
LIST_COVERAGE_SHARE = 0.5
#: "summarise the article…" quotes this many sentences of the article's start.
SUMMARY_SENTENCES = 3

#: The English words a cut fragment does not end (or start) on: the stopwords, except those whose
#: dropping would change what it says ("not", "many").
_EDGE_FUNCTION_WORDS = STOPWORDS - frozenset({"no", "not", "nor", "never", "many", "few", "all", "none"})

_PRONOUN_START = re.compile(r"^(he|she|they|it|this|these|those|that|his|her|their|its)\b", re.I)
_REASON = re.compile(r"\b(because|since|due to|as a result of|owing to|in order to|so that|after|following)\b", re.I)

LeadOf = Callable[[str], Sequence[Hit]]  # doc_id -> its first chunks (for summaries)


@dataclass
class _Part:
    """One cited piece of the answer text."""

    text: str
    sentence: SentenceEvidence


class ExtractiveAnswerer:
    """Answers with verbatim text from the sources, needing no model server."""

    name = "extractive"

    def __init__(self, embedder: Embedder) -> None:
        self.sentences = SentenceEmbeddingCache(embedder)

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

    def answer(
        self,
        question: str,
        hits: Sequence[Hit],
        keyword_index: KeywordIndex,
        question_vector: Sequence[float],
        *,
        evidence: Evidence | None = None,
        shown: Sequence[str] = (),
        lead_of: LeadOf | None = None,
        side_evidence: Sequence[Evidence] = (),
    ) -> Answer:
        """The answer from `evidence` (computed here when not given).

        `lead_of(doc_id)` returns an article's first chunks, for summaries; `side_evidence` holds
        the evidence gathered for each side of a comparison.
        """
        ev = evidence or self.evidence(question, hits, keyword_index, question_vector, shown=shown)
        if ev.best is None:
            return Answer(question, "", refused=True, backend=self.name, evidence=0.0)
        q = ev.question
        if q.kind == "summary" and lead_of is not None:
            parts, support = self._summary(ev, lead_of), []
        elif q.kind == "compare" and side_evidence:
            parts, support = self._comparison(side_evidence), []
        elif q.kind == "list":
            parts, support = self._list(ev)
        elif q.kind == "byline":
            parts, support = self._byline(ev, lead_of)
        else:
            parts, support = self._single(ev)
        return self._compose(question, parts, support, ev.score)

    def best_quote(self, question_vector: Sequence[float], question: str, hit: Hit, keyword_index: KeywordIndex) -> str:
        """The sentence of one chunk that best matches the question (used to quote LLM sources)."""
        ev = self.evidence(question, [hit], keyword_index, question_vector)
        return ev.best.text if ev.best is not None else ""

    # -- the kinds of answer ----------------------------------------------------------------------
    def _single(self, ev: Evidence) -> tuple[list[_Part], list[SentenceEvidence]]:
        best = ev.best
        assert best is not None
        lead = _lead(ev.question, best)
        support = [best] + _next_sentence(ev, best) + _more_support(ev)
        return [_Part(lead, best)], support

    def _list(self, ev: Evidence) -> tuple[list[_Part], list[SentenceEvidence]]:
        """The items of the asked kind, gathered from the sentences (of any article) that rank near the best."""
        items: list[_Part] = []
        seen: set[str] = set()
        best = ev.best
        assert best is not None
        floor = LIST_COVERAGE_SHARE * coverage(ev.question, best)
        for s in ev.sentences:
            if s.score < best.score - LIST_CUTOFF or len(items) >= MAX_LIST_ITEMS:
                break
            if items and (_coordination(items[0].text) or coverage(ev.question, s) < floor):
                break
            typed = [sp for sp in s.typed_spans if sp.score >= 0]
            if not typed:
                continue
            span = _widest_typed(typed)
            key = " ".join(terms(span.text))
            if key in seen:
                continue
            seen.add(key)
            items.append(_Part(span.text, s))
        if not items:
            return self._single(ev)
        support = [p.sentence for p in items]
        more = _next_sentence(ev, best) + _more_support(ev)
        return items, support + [s for s in more if all(s is not x for x in support)]

    def _byline(self, ev: Evidence, lead_of: LeadOf | None) -> tuple[list[_Part], list[SentenceEvidence]]:
        """The author of the article the question is about, quoted where the article names them.

        The name comes from the article's metadata (its byline, rag/clean.py) but is cited where it
        stands in the text ("By Lena Marsh"), so it verifies like any quote; an article whose text
        never names its author is answered from its sentences as usual.
        """
        best = ev.best
        assert best is not None
        author = str(best.hit.metadata.get("author", "")).strip()
        if not author:
            return self._single(ev)
        pool = [s for s in ev.sentences if s.doc_id == best.doc_id]
        if lead_of is not None:
            pool += sentences_of(lead_of(best.doc_id))
        named = next((s for s in pool if author in s.text), None)
        if named is None:
            return self._single(ev)
        return [_Part(author, named)], [best] if best.text != named.text else []

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
    def _compose(self, question: str, parts: list[_Part], support: list[SentenceEvidence], score: float) -> Answer:
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
        led = {id(p.sentence) for p in parts if p.text == p.sentence.text}
        for s in support:
            if id(s) in led:
                continue
            quote = _with_context(s)
            n = cite(s, quote)
            lines.append(f"“{quote[1]}” [{n}]")
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


def _lead(q: Question, s: SentenceEvidence) -> str:
    """The shortest verbatim fragment of `s` that answers the question, or the sentence itself."""
    if q.kind == "define":
        found = _description(q.target, s)
        if found:
            return found
    if q.kind == "why":
        return _reason(s) or s.text
    if q.kind in ("how", "yesno", "other", "compare", "summary"):
        return s.text
    spans = s.spans
    if not spans:
        return s.text
    top = spans[0]
    rivals = [sp for sp in spans[1:] if sp.end <= top.start or sp.start >= top.end]  # not nested in it
    margin = top.score - (rivals[0].score if rivals else 0.0)
    if q.labels and top.typed and margin >= CONFIDENT_MARGIN and top.distance <= CONFIDENT_DISTANCE:
        return _full_name(top, s)
    if len(s.text.split()) <= SHORT_SENTENCE_WORDS:
        return s.text
    return _fragment(s, top, FRAGMENT_WORDS)


def _full_name(span: Span, s: SentenceEvidence) -> str:
    """A first name alone ("Dan is now editor…") read as the full name the chunk gave before it."""
    if span.label != "PERSON" or " " in span.text:
        return span.text
    text = s.hit.text
    for c in annotation_of(text, s.hit.metadata).candidates:
        name = text[c.start : c.end]
        if c.label == "PERSON" and c.start < span.start and name.startswith(span.text + " "):
            return name
    author = str(s.hit.metadata.get("author", ""))
    return author if author.startswith(span.text + " ") else span.text


def _fragment(s: SentenceEvidence, span: Span, words: int) -> str:
    """About `words` words of the sentence around `span`, cut at word boundaries.

    A cut never ends on a function word ("…is centered on the"), nor starts on one inside the
    sentence ("of the Yuan…"): those edge words are dropped rather than the fragment grown, so
    it stays within `words`. Measured on squad2-dev, the news dev sets and the blind set (229
    answerable questions, 2026-12-02): every lead kept the answer it held, and 33 leads that
    ended on "the", "of", "and"... end on a word.
    """
    text = s.hit.text
    tokens = [(m.start() + s.start, m.end() + s.start) for m in re.finditer(r"\S+", s.text)]
    inside = [i for i, (a, b) in enumerate(tokens) if b > span.start and a < span.end]
    if not inside:
        return s.text
    lo, hi = inside[0], inside[-1]
    turn = 0
    while hi - lo + 1 < words and (lo > 0 or hi < len(tokens) - 1):
        if (turn % 2 == 0 and hi < len(tokens) - 1) or lo == 0:
            hi += 1
        else:
            lo -= 1
        turn += 1
    # English only: other languages' stopword lists (stopwords-iso) hold content words too
    english = str(s.hit.metadata.get("lang", "en") or "en") == "en"
    function_words = _EDGE_FUNCTION_WORDS if english else frozenset()

    def bare(i: int) -> str:
        return re.sub(r"\W", "", text[tokens[i][0] : tokens[i][1]].lower())

    while hi > inside[-1] and bare(hi) in function_words:
        hi -= 1
    while 0 < lo < inside[0] and bare(lo) in function_words:  # "The…" may start a sentence
        lo += 1
    fragment = text[tokens[lo][0] : tokens[hi][1]]
    return fragment.strip(" ,;:—–-(")


def _description(target: str, s: SentenceEvidence) -> str:
    """For "who is X?": the appositive after X ("X, chief of …,"), or the title before X."""
    text = s.hit.text
    where = text.find(target, s.start, s.end)
    if where < 0:
        last = target.split()[-1]
        where = text.find(last, s.start, s.end)
        if where < 0:
            return ""
        target = last
    after = where + len(target)
    for c in sorted(s.candidates, key=lambda c: (c.start, -(c.end - c.start))):
        # "The regional governor, Tomas Ibarra, said…": the description stands before the name
        if c.end <= where and text[c.end : where].strip() in (",", "(") and c.start >= s.start:
            before = text[c.start : c.end]
            if not any(x.start < c.start and x.end == c.end for x in s.candidates) and len(before.split()) <= 12:
                return before
        gap = text[after : c.start]
        if c.start >= after and gap.strip() in (",", "(", "—", "–", "-", ", the", ", a") and c.end > c.start:
            return text[c.start : c.end]
        if gap.strip() in ("is", "was", "is a", "was a", "is the", "was the") and c.start > after:
            return text[c.start : c.end]
    # a title in front of the name: "U.S. Vice President Mike Pence", "Czech cybersecurity agency NUKIB"
    titled = [c for c in s.candidates if c.start < where and c.end == after and "," not in text[c.start : c.end]]
    if titled:
        widest = max(titled, key=lambda c: c.end - c.start)
        if len(text[widest.start : widest.end].split()) <= 12:
            return text[widest.start : widest.end]
    return ""


def _reason(s: SentenceEvidence) -> str:
    """The clause that gives the reason: from "because", "due to"… to the end of the sentence."""
    m = _REASON.search(s.text)
    if not m or len(s.text[m.start() :].split()) < 3:
        return ""
    return s.text[m.start() :].rstrip()


def _next_sentence(ev: Evidence, best: SentenceEvidence) -> list[SentenceEvidence]:
    """The sentence after the best one when it goes on about the question ("…, he added")."""
    s = neighbour(best, ev.sentences, 1)
    if s is None:
        return []
    # a sub-heading is not a sentence that goes on ("…slowed." then "Why the cuts")
    goes_on = s.keywords > 0 and s.text.rstrip().endswith(TERMINAL) and not _redundant(s, best)
    return [s] if goes_on else []


def _more_support(ev: Evidence) -> list[SentenceEvidence]:
    best = ev.best
    assert best is not None
    chosen = [best]
    for s in ev.sentences[1:]:
        if len(chosen) >= MAX_SUPPORT or s.score < best.score - RELATIVE_CUTOFF:
            break
        if any(_redundant(s, other) for other in chosen):
            continue
        chosen.append(s)
    return chosen[1:]


def _coordination(text: str) -> bool:
    """"China and Russia", "Microsoft, Dell and AT&T": a phrase that is itself a list."""
    return bool(re.search(r",\s|\s(?:and|or)\s", text))


def _widest_typed(spans: list[Span]) -> Span:
    """Among the best-scored typed spans, prefer the one covering its conjuncts ("A and B")."""
    top = spans[0]
    for sp in spans[1:]:
        if sp.start <= top.start and sp.end >= top.end and sp.score >= top.score - 0.1:
            top = sp
    return top


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
