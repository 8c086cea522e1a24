"""Attribution: qabot cites an LLM's reply itself, sentence by sentence, from what the sources say.

Small local models rarely follow a citation format ("Mateusz Morawiecki signed the 5G deal with the
US." is right, and carries no "[1]"); large hosted ones mostly do, not always, and sometimes cite the
wrong excerpt. So the reply is judged on what it says, not on its syntax: each of its sentences is
matched to the source sentence that supports it, and that sentence becomes its citation and its
verbatim quote. A source sentence supports a reply sentence when

- every number of the reply sentence stands in it (or in it and one other sentence of the same
  article: a reply often joins two), and so does every quote it makes, word for word; every name
  stands in the same excerpt or its byline and title (a reply names "the US State Department
  official" whom the article introduced three sentences earlier): a claim the sources do not make is
  never cited to them;
- most of its content words stand there too (MIN_TERM_SHARE), and a statement without any name or
  number shares at least two of them with the supporting sentence itself; and
- it is close in meaning (MIN_SIMILARITY: the packaged embedding model, reply sentence read with the
  question, since "Poland." alone means little). A statement without any name or number must also be
  close in meaning on its own: read with the question, "More at the agency's site." took the meaning of
  the question about the agency and matched a sentence about it.

Text caught in a loop is never supported, whatever words it borrows.

A citation the model gave is kept when its source supports the sentence, moved to the one that
does, or removed; a sentence no source supports is dropped. What is left is the answer; nothing
left means the reply is not used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..quotes import normalize, verify_quote
from ..retrieve import Hit
from ..text import STOPWORDS, split_sentences, terms
from .evidence import SentenceEmbeddingCache, SentenceEvidence, sentences_of
from .grounding import CITATION_GROUP

#: Share of a reply sentence's content words (stemmed, stopwords out) that its support must hold.
#: Half: a reply paraphrases ("signed the deal" for "signed a cooperation agreement"), but a sentence
#: sharing fewer of its words is about something else.
MIN_TERM_SHARE = 0.5
#: Cosine between the question + reply sentence and the supporting sentence (all-MiniLM-L6-v2). A round
#: value, not fitted to the dev replies: the supporting sentences of the recorded Qwen replies score 0.55-0.96.
MIN_SIMILARITY = 0.5
#: Ranking the sentences that support a reply sentence: a pair of sentences only wins over one sentence
#: that holds it all by a clear margin, and a source the model cited wins a tie.
PAIR_COST = 0.1
CITED_BONUS = 0.05

_CITATIONS = re.compile(r"\s*" + CITATION_GROUP.pattern)  # a citation group with the space before it
_TOKEN = re.compile(r"\w[\w',.:/-]*\w|\w")
_ACRONYM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]?")
#: A source's fence tag, chat mention markup: no words of what the reply says.
_TAG = re.compile(r"\bsource-[0-9a-f]{1,32}\b|<[@#][!&]?\d+>|@(?:everyone|here)\b")
_LATE_CITATION = re.compile(r"([.!?])\s*((?:" + CITATION_GROUP.pattern + r"\s*)+)")  # citations after a full stop
_QUOTED = re.compile(r"[\"“][^\"“”]*[\"”]")
#: A citation written in words: "According to source 2, …", "(excerpt 1)", "as stated in source 3". Its
#: number is no fact of the sentence (a supporting sentence need not say "2"): it cites its own sentence.
_WORDED_CITATION = re.compile(r"(?:\b(?:according to|as (?:stated|reported|said) in|as per|in|from)\s+)?\(?\b(?:the\s+)?"
                              r"(?:source|excerpt)\s+(?:no\.?\s*|#)?(\d{1,2})\b\)?,?", re.IGNORECASE)


@dataclass(frozen=True)
class Support:
    """The source text that supports one reply sentence: its citation and its quote."""

    source: int  # 1-based number of the hit in the hits given to `attribute`
    quote: str  # verbatim: one source sentence, or two of one article (" … " between them when apart)
    similarity: float


@dataclass
class Attribution:
    """The reply, sentence by sentence, with what supports each (None: nothing does)."""

    sentences: list[tuple[str, Support | None, tuple[int, ...]]] = field(default_factory=list)  # (text, support, cited)

    @property
    def supported(self) -> list[tuple[str, Support]]:
        return [(text, s) for text, s, _ in self.sentences if s is not None]

    @property
    def dropped(self) -> list[str]:
        return [text for text, s, _ in self.sentences if s is None]

    @property
    def as_written(self) -> bool:
        """Every sentence supported, each by a source the model itself cited."""
        return all(s is not None and cited and s.source in cited for _, s, cited in self.sentences)


def reply_sentences(reply: str) -> list[tuple[str, tuple[int, ...]]]:
    """The reply's statements (lines and sentences), each without its citations, with the numbers it cited.

    A citation written after the full stop ("… of vital importance. [1]") belongs to the sentence before it.
    A statement said again word for word (a small model caught in a loop repeats whole lines) is kept once.
    """
    out: list[tuple[str, tuple[int, ...]]] = []
    seen: set[str] = set()
    reply = _LATE_CITATION.sub(lambda m: f" {' '.join(m.group(2).split())}{m.group(1)} ", reply)
    for line in reply.splitlines():
        line = line.strip().lstrip("-*•0123456789.) ").strip() if re.match(r"\s*([-*•]|\d+[.)])\s", line) else line.strip()
        for start, end in split_sentences(line):
            piece = line[start:end]
            cited = tuple(int(n) for group in CITATION_GROUP.findall(piece) for n in re.split(r"\s*,\s*", group))
            cited += tuple(int(n) for n in _WORDED_CITATION.findall(piece))
            text = _CITATIONS.sub("", piece).strip()
            if _WORDED_CITATION.search(text):
                opens = _WORDED_CITATION.match(text)
                text = re.sub(r"\s+([.,;:!?])", r"\1", " ".join(_WORDED_CITATION.sub(" ", text).split()))
                if opens and text[:1].islower():  # "As stated in source 3 the deal…"
                    text = text[0].upper() + text[1:]
            key = normalize(text).lower()
            if any(ch.isalnum() for ch in text) and key not in seen:
                seen.add(key)
                out.append((text, cited))
    return out


def facts(text: str) -> tuple[set[str], set[str]]:
    """The numbers and the names of a sentence: what a supporting sentence must hold word for word.

    A number is any word with a digit ("2,000", "5G", "May 2-3"'s "2-3"); a name is a capitalised word
    that does not open the sentence, or that opens it as an acronym ("NUKIB organises…") or followed by
    another capitalised word ("Mateusz Morawiecki signed…"). Quoted words are left to the quote check.
    """
    words = _words(_QUOTED.sub(" ", text))
    numbers = {w.lower() for w in words if any(ch.isdigit() for ch in w)}
    names = set()
    for i, word in enumerate(words):
        if word in numbers or not word[0].isupper() or word.lower() in STOPWORDS:
            continue
        if i > 0 or (len(words) > 1 and words[1][0].isupper()) or (len(word) > 1 and word.isupper()):
            names.add(word.lower())
    return numbers, names


def holds(window: str, numbers: set[str], names: set[str], around: frozenset[str] = frozenset(),
          dated: frozenset[str] = frozenset()) -> bool:
    """Whether `window` (or the article's date, `dated`: its words) holds every number, and `window` or
    `around` (the words of its excerpt, byline and title: `word_set`) every name, case-insensitively."""
    present = word_set(window)
    return numbers <= present | dated and names <= present | around


def word_set(text: str) -> frozenset[str]:
    """The lower-cased words of `text` as fact matching reads them (`_words`)."""
    return frozenset(w.lower() for w in _words(text))


def _words(text: str) -> list[str]:
    """Words for fact matching: hyphenated ones split ("US-Poland"), possessives and thousands commas dropped,
    dotted acronyms joined ("U.S." is "US"); lone letters ("U. S." as a model spaces it), fence tags and
    mention markup ("<@1234>") are no facts."""
    out = []
    for token in _TOKEN.findall(normalize(_TAG.sub(" ", text))):
        token = re.sub(r"(?<=\d),(?=\d{3})", "", token).strip(".,:'")
        token = re.sub(r"'s$", "", token)
        if _ACRONYM.fullmatch(token):
            token = token.replace(".", "")
        parts = [token] if token[:1].isdigit() else token.split("-")
        out += [p for p in parts if len(p) > 1 or p.isdigit()]
    return out


def attribute(question: str, reply: str, hits: Sequence[Hit], vectors: SentenceEmbeddingCache) -> Attribution:
    """Match each statement of `reply` to the sentence of `hits` that supports it (see the module docstring)."""
    statements = reply_sentences(reply)
    pool = sentences_of(hits)
    if not statements or not pool:
        return Attribution([(text, None, cited) for text, cited in statements])
    index = {id(h): n for n, h in enumerate(hits, start=1)}
    source_vectors = np.stack(vectors.embed([s.text for s in pool]))
    said = [_TAG.sub(" ", text) for text, _ in statements]  # what each statement says, without tags and mentions
    reply_vectors = np.stack(vectors.embed([f"{question} {text}" for text in said]))
    similarity = reply_vectors @ source_vectors.T
    facts_of = [facts(text) for text, _ in statements]
    # statements with no name or number, also read alone (they carry nothing the sources must hold)
    plain = [i for i, (numbers, names) in enumerate(facts_of) if not (numbers or names)]
    alone = dict(zip(plain, np.stack(vectors.embed([said[i] for i in plain])) @ source_vectors.T,
                     strict=True)) if plain else {}
    pool_terms = {id(s): set(terms(s.text)) for s in pool}
    # per chunk, once: the words its names may stand in (text, title, byline) and those of its date
    around = {id(h): word_set(" ".join([h.text, *(str(h.metadata.get(k, "")) for k in ("title", "author"))]))
              for h in hits}
    dated = {id(h): word_set(str(h.metadata.get("date", "")).replace("-", " ")) for h in hits}
    result = Attribution()
    for i, (text, cited) in enumerate(statements):
        if _loops(text):
            result.sentences.append((text, None, cited))  # "…on 5G networks on 5G networks on 5G networks…"
            continue
        numbers, names = facts_of[i]
        quoted = [m.group()[1:-1] for m in _QUOTED.finditer(text)]
        words = set(terms(said[i]))
        best: tuple[float, Support] | None = None
        for j, s in enumerate(pool):
            if similarity[i, j] < MIN_SIMILARITY:
                continue
            if not (numbers or names) and (len(words & pool_terms[id(s)]) < 2 or alone[i][j] < MIN_SIMILARITY):
                continue  # nothing specific in common: "More at the agency's site" is not a claim of it
            for quote_sentences in _windows(s, pool, similarity[i]):
                window = " ".join(x.text for x in quote_sentences)
                held = set().union(*(pool_terms[id(x)] for x in quote_sentences))
                share = len(words & held) / len(words) if words else 1.0
                if share < MIN_TERM_SHARE or not holds(window, numbers, names, around[id(s.hit)], dated[id(s.hit)]):
                    continue
                if not all(verify_quote(q, window) for q in quoted):
                    continue
                score = float(similarity[i, j]) + share - PAIR_COST * (len(quote_sentences) - 1)
                score += CITED_BONUS if index[id(s.hit)] in cited else 0.0
                if best is None or score > best[0]:
                    best = (score, Support(index[id(s.hit)], _quote(quote_sentences), float(similarity[i, j])))
                break  # the first window that holds it is the smallest
        result.sentences.append((text, best[1] if best else None, cited))
    return result


def _loops(text: str, n: int = 3, times: int = 3) -> bool:
    """A model caught in a loop: some run of `n` words comes back `times` times or more. Such text may use
    only the source's words and still say nothing a reader should be shown."""
    words = text.lower().split()
    seen: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        key = tuple(words[i:i + n])
        seen[key] = seen.get(key, 0) + 1
        if seen[key] >= times:
            return True
    return False


def _windows(s: SentenceEvidence, pool: Sequence[SentenceEvidence], similarity: np.ndarray) -> list[list[SentenceEvidence]]:
    """The sentence alone, then with each other sentence of its article, the closest in meaning first.

    A reply sentence often joins two statements of one article ("The German ministers attended the
    secret session on Huawei": the session in one sentence, the ministers in the next).
    """
    others = sorted((k for k, t in enumerate(pool) if t is not s and t.doc_id == s.doc_id), key=lambda k: -similarity[k])
    return [[s]] + [sorted([s, pool[k]], key=lambda x: x.offset) for k in others]


def _quote(sentences: Sequence[SentenceEvidence]) -> str:
    """The sentences as they stand in the article: verbatim when adjacent in one chunk, else joined by " … "."""
    first, last = sentences[0], sentences[-1]
    if first.hit is last.hit and first.hit.text[first.end:last.start].strip() == "":
        return first.hit.text[first.start:last.end]
    return " … ".join(x.text for x in sentences)
