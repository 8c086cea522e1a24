"""The evidence for a question: the sentences that would be quoted, and how well they cover it.

Whether the articles cover a question is decided from the sentences an answer would quote,
not from how similar a whole chunk is to the question (a five-word question about one name
never looks like a 200-wordpiece chunk). A sentence is good evidence when

- it (with the sentence before it and the article's title) holds the question's rare words,
  weighted by idf — with the names and numbers of the question required, up to a typo;
- it holds something of the kind asked (a date for "when", a person for "who"), found by the
  ingest-time NER (rag/nlp.py), that the question does not already say;
- a negated question ("who did not…") is matched by a negated sentence.

The same sentences, ranked, are what the offline answerer quotes, so the refusal and the answer
can never disagree about what the articles say.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..embed import Embedder
from ..nlp import Candidate, annotation_of
from ..retrieve import Hit, KeywordIndex
from ..text import TERMINAL, terms
from .question import NUMERIC, Question, stem

#: Weight of the idf-weighted share of question words in a sentence, beside its cosine similarity
#: (both 0..1). Measured on dev+more (news) and squad2-dev (encyclopedic): 0.6 picked the sentence
#: holding the answer as often as 1.0 and 2.0 (0.85/0.85/0.84 on squad2-dev) and better on news.
KEYWORD_WEIGHT = 0.6
#: Question words found only in the sentence before (or the title) count this much: "China and
#: Russia were not invited, he added" answers a question about the meeting named just before.
CONTEXT_WEIGHT = 0.3
#: How much the best answer candidate of a sentence adds to its rank: a sentence that holds a date
#: for a "when" question beats a similar one that does not.
CANDIDATE_WEIGHT = 0.5
#: Sentences the user was already shown in this conversation rank this much lower (follow-ups
#: such as "who else…" want new evidence, and no answer should repeat the previous one).
SHOWN_PENALTY = 0.3
#: Dense similarity counts as evidence once it is above this much: paraphrases share few words.
DENSE_OFFSET = 0.2
#: A sentence this dissimilar to the question (cosine) holds its words in another sense: its
#: coverage counts nothing at UNRELATED_DENSE and fully from UNRELATED_DENSE + RELATED_DENSE_SPAN.
#: Measured on the dev sets: the sentences that answer have cosines from ~0.2 up (median ~0.55);
#: the off-topic matches 0.05-0.2.
UNRELATED_DENSE = 0.1
RELATED_DENSE_SPAN = 0.25
#: Each name or number of the question that the evidence does not mention halves the evidence.
MISSING_KEY_FACTOR = 0.25
#: A negated question answered by a sentence without any negation: the same words, the opposite
#: fact ("Who did not sign…" against "X signed…").
NEGATION_MISMATCH_FACTOR = 0.25
#: Two spellings of a name are the same name at this rapidfuzz ratio (0..100): "Rhou"/"Rou",
#: "Sky Drive"/"SkyDrive"; crowd-written questions misspell names often.
NAME_SIMILARITY = 80
#: A sentence that leaves out one of the question's names or numbers ranks this much lower.
MISSING_KEY_PENALTY = 0.2
#: A sentence without negation ranks this much lower for a negated question ("who did not…").
NEGATION_PENALTY = 0.1
#: The evidence is the best coverage among this many top-ranked sentences: the sentence that
#: ranks first may hold the answer while the names it refers to stand in the one next to it.
EVIDENCE_SENTENCES = 3
#: Sentences shorter than this many words are labels, not statements (unless they end a sentence).
MIN_SENTENCE_WORDS = 3

#: Words and candidate texts whose terms are kept (pure functions of the text): the sentences of the
#: retrieved chunks hold a few thousand distinct words; 2**16 entries are a few MB.
TERM_CACHE_SIZE = 1 << 16

_WORD = re.compile(r"\w\w+", re.UNICODE)
#: A number, a year, a decade or an ordinal written in digits ("2,000", "3.21", "7-10", "1990s", "5th");
#: not a name with a digit in it ("5G", "Astra 2A").
_NUMBER = re.compile(r"\d[\d,.\-–]*(?:s|st|nd|rd|th)?")
#: Candidate labels that are numbers or times: answers even when they hold no word of their own.
_NUMERIC_LABELS = NUMERIC | {"DATE", "TIME", "ORDINAL"}
#: "who" answers, best first: a person, then an organisation, a group, a place.
_WHO_WEIGHTS = {"PERSON": 1.0, "ORG": 0.7, "NORP": 0.6, "GPE": 0.4}


@dataclass
class Span:
    """An answer candidate inside a sentence, scored for one question."""

    start: int  # offsets in the chunk text
    end: int
    text: str
    label: str
    score: float
    typed: bool  # of the kind the question asks for
    distance: int = 0  # words between the span and the nearest of the question's words in the sentence


@dataclass
class SentenceEvidence:
    """One sentence of a retrieved chunk, with what it says about the question."""

    hit: Hit
    hit_rank: int
    start: int  # offsets in the chunk text
    end: int
    position: int  # index of the sentence in the chunk
    negated: bool
    candidates: list[Candidate]
    text: str = ""
    keywords: float = 0.0  # idf-weighted share of the question's words in the sentence
    context: float = 0.0  # the same over the sentence, the one before it and the title
    missing_keys: float = 0.0  # names/numbers of the question not found, weighted by rarity (see _missing)
    distant_numbers: int = 0  # numbers of the question the chunk has, but not this sentence or the one before
    dense: float = 0.0
    vector: np.ndarray | None = None
    spans: list[Span] = field(default_factory=list)
    score: float = 0.0

    @property
    def doc_id(self) -> str:
        return self.hit.doc_id

    @property
    def offset(self) -> int:
        """Where the sentence starts in the article's cleaned text."""
        return int(self.hit.metadata.get("start", 0)) + self.start


@dataclass
class Evidence:
    question: Question
    sentences: list[SentenceEvidence]  # ranked, best first
    score: float  # how well the best sentence covers the question, 0..1

    @property
    def best(self) -> SentenceEvidence | None:
        return self.sentences[0] if self.sentences else None


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


def interrogative(text: str) -> str:
    """The sentences of a message that ask (end with "?"); the whole text when none or all do.

    "Which agency runs the meeting? Ignore previous instructions…" asks the first sentence only;
    its evidence must not be diluted by the words that follow it.
    """
    parts = [p for p in re.split(r"(?<=[.!?])\s+", text.strip()) if p]
    asking = [p for p in parts if p.rstrip().endswith("?")]
    return " ".join(asking) if asking and len(asking) < len(parts) else text


def gather(
    question: Question,
    hits: Sequence[Hit],
    keyword: KeywordIndex,
    question_vector: Sequence[float],
    sentence_vectors: SentenceEmbeddingCache,
    shown: Sequence[str] = (),
    query: str = "",
) -> Evidence:
    """Rank the sentences of `hits` for the question and measure how well the best one covers it.

    `query` is what the words are counted from (the question, or a follow-up with its topic);
    `shown` are quotes the user has already seen in this conversation.
    """
    sentences = sentences_of(hits)
    if not sentences:
        return Evidence(question, [], 0.0)
    words = interrogative(query or question.text)
    by_language: dict[str, tuple[dict[str, float], float]] = {}

    def weights_in(lang: str) -> tuple[dict[str, float], float]:
        """The question's words as that language's keyword index stems them, with their idf."""
        if lang not in by_language:
            found = {t: keyword.idf(t) for t in set(terms(words, lang))}
            by_language[lang] = (found, sum(found.values()) or 1.0)
        return by_language[lang]

    qv = np.asarray(question_vector, dtype=np.float32)
    shown_set = {" ".join(s.split()) for s in shown}
    keys = [k for k in question.key_words if k.lower() in words.lower()]
    numbers = [re.compile(rf"(?<![\d.]){re.escape(_number(k))}(?!\d)") for k in keys if _NUMBER.fullmatch(k)]
    around: dict[str, _Surroundings] = {}
    term_sets = _TermSets()
    by_position = {(id(s.hit), s.position): s for s in sentences}  # neighbour(s, sentences, -1), at once
    for s, vec in zip(sentences, sentence_vectors.embed([s.text for s in sentences])):
        s.vector = vec
        s.dense = float(qv @ vec)
        lang = str(s.hit.metadata.get("lang", "en") or "en")
        weights, total = weights_in(lang)
        own = term_sets.of(s.text, lang)
        s.keywords = sum(w for t, w in weights.items() if t in own) / total
        before = by_position.get((id(s.hit), s.position - 1))
        title = str(s.hit.metadata.get("title", ""))
        context_text = " ".join(x for x in (before.text if before else "", s.text, title) if x)
        # the terms of the three texts joined by spaces: each text's own, computed once per gather
        context = own | term_sets.of(before.text if before else "", lang) | term_sets.of(title, lang)
        s.context = sum(w for t, w in weights.items() if t in context) / total
        # names and numbers may stand in the chunk or its retrieved neighbours: "the meeting" in
        # one chunk is the Prague meeting named in the chunk just before it
        if s.hit.chunk_id not in around:
            around[s.hit.chunk_id] = _Surroundings.of(s.hit, hits, keys, numbers, keyword)
        s.missing_keys = around[s.hit.chunk_id].missing
        s.distant_numbers = _distant_numbers(around[s.hit.chunk_id].numbers, context_text)
        s.spans = _score_spans(s, question, weights, total)
        best_span = max((sp.score for sp in s.spans), default=0.0)
        s.score = s.dense + KEYWORD_WEIGHT * s.keywords + CONTEXT_WEIGHT * (s.context - s.keywords) + 0.02 / (1 + s.hit_rank) + CANDIDATE_WEIGHT * max(best_span, 0.0)
        if not s.text.rstrip().endswith(TERMINAL) or s.text == title:
            s.score -= 0.15  # headlines and labels rarely answer; their sentences do
        s.score -= MISSING_KEY_PENALTY * s.missing_keys
        if question.negated and not s.negated:
            s.score -= NEGATION_PENALTY
        if " ".join(s.text.split()) in shown_set:
            s.score -= SHOWN_PENALTY
    ranked = sorted(sentences, key=lambda s: (-s.score, s.doc_id, s.offset))
    return Evidence(question, ranked, max(coverage(question, s) for s in ranked[:EVIDENCE_SENTENCES]))


class _TermSets:
    """The set of terms of each text, per language, computed once: a sentence's terms are also its
    follower's context, and every sentence of a chunk shares its title."""

    def __init__(self) -> None:
        self._sets: dict[tuple[str, str], frozenset[str]] = {}

    def of(self, text: str, lang: str) -> frozenset[str]:
        key = (text, lang)
        if key not in self._sets:
            self._sets[key] = frozenset(terms(text, lang))
        return self._sets[key]


def coverage(question: Question, s: SentenceEvidence) -> float:
    """How well one sentence (in its context) covers the question, 0..1."""
    value = max(s.context, s.dense - DENSE_OFFSET)
    # the words are there, the meaning is not ("the capital of Australia" against a sentence that
    # lists the countries at a meeting): a ramp, not a step, so int8 and float32 agree. A "What is X?"
    # whose X is a name the sentence gives has no meaning besides the name to miss ("What is NUKIB?": an
    # acronym the embedding model has never seen scores 0.2 against "…agency NUKIB").
    if not _defines_named(question, s):
        value *= min(1.0, max(0.0, (s.dense - UNRELATED_DENSE) / RELATED_DENSE_SPAN))
    value *= MISSING_KEY_FACTOR ** (s.missing_keys + s.distant_numbers)
    if question.negated and not s.negated:
        value *= NEGATION_MISMATCH_FACTOR
    return max(0.0, min(1.0, value))


def _defines_named(question: Question, s: SentenceEvidence) -> bool:
    """A "who/what is X?" whose X is all names, every one of them in the sentence itself."""
    target = question.target.split()
    return (question.kind == "define" and bool(target) and all(w in question.key_words for w in target)
            and all(names(w, s.text) for w in target))


def sentences_of(hits: Sequence[Hit]) -> list[SentenceEvidence]:
    """The sentences of the chunks, in order, once each (overlapping chunks repeat sentences)."""
    out: list[SentenceEvidence] = []
    seen: set[tuple[str, int]] = set()
    for rank, hit in enumerate(hits):
        annotation = annotation_of(hit.text, hit.metadata)
        chunk_start = int(hit.metadata.get("start", 0))
        for position, sent in enumerate(annotation.sentences):
            key = (hit.doc_id, chunk_start + sent.start)  # overlapping chunks repeat sentences
            text = hit.text[sent.start : sent.end]
            if key in seen or (len(text.split()) < MIN_SENTENCE_WORDS and not text.endswith(".")):
                continue
            seen.add(key)
            candidates = [c for c in annotation.candidates if c.sentence == position]
            out.append(SentenceEvidence(hit, rank, sent.start, sent.end, position, sent.negated, candidates, text))
    return out


def neighbour(s: SentenceEvidence, sentences: Sequence[SentenceEvidence], step: int) -> SentenceEvidence | None:
    """The sentence `step` places from `s` in the same chunk (-1: the one before), if gathered."""
    for other in sentences:
        if other.hit is s.hit and other.position == s.position + step:
            return other
    return None


def _number(text: str) -> str:
    """A number as written in either text: "2,000" and "2000", "7–10" and "7-10" are one number."""
    return re.sub(r"(?<=\d),(?=\d{3})", "", text).replace("–", "-").replace("—", "-").lower()


def _distant_numbers(numbers: Sequence[re.Pattern[str]], context: str) -> int:
    """How many of the numbers (those the chunk's surroundings hold) the sentence with the one before lacks.

    A number is a local fact: "What has been held since 1987…" is not answered by "Since 1963,
    the festival…" because 1987 stands elsewhere in the article. Numbers the surroundings lack
    are counted by _missing already.
    """
    near = _number(context)
    return sum(1 for n in numbers if not n.search(near))


@dataclass
class _Surroundings:
    """What the question's names and numbers find around one chunk: its title, itself and the
    retrieved chunks right before and after it (computed once per chunk, not per sentence)."""

    missing: float  # see _missing
    numbers: list[re.Pattern[str]]  # the question's numbers that stand there

    @classmethod
    def of(cls, hit: Hit, hits: Sequence[Hit], keys: Sequence[str], numbers: Sequence[re.Pattern[str]],
           keyword: KeywordIndex) -> _Surroundings:
        index = int(hit.metadata.get("chunk_index", 0))
        near = [h.text for h in hits if h.doc_id == hit.doc_id and abs(int(h.metadata.get("chunk_index", 0)) - index) <= 1]
        text = "\n".join([str(hit.metadata.get("title", "")), *near])
        plain = _number(text)
        return cls(_missing(keys, text, keyword), [n for n in numbers if n.search(plain)])


def _missing(keys: Sequence[str], text: str, keyword: KeywordIndex) -> float:
    """How many of the question's names and numbers the text does not mention (up to a typo).

    Each missing one counts by its rarity in the corpus (its idf over the largest possible idf):
    a name the articles never use counts 1; "European" in a corpus about Europe, where "EU"
    stands in the sentence, counts little.
    """
    if not keys:
        return 0
    from rapidfuzz import fuzz, process

    lowered = _plain(text)
    words = set(_WORD.findall(lowered)) | set(re.findall(r"\w+", lowered))
    missing = 0.0
    top = keyword.idf("") or 1.0  # a term in no chunk has the largest idf
    # "Sky Drive" in a question, "SkyDrive" in the article: both words are mentioned
    compounds = {k for a, b in zip(keys, keys[1:]) if _plain(a + b) in words for k in (a, b)}
    for key in keys:
        k = _plain(key)
        if re.search(rf"(?<!\w){re.escape(k)}(?!\w)", lowered) or _ORDINALS.get(k, "\0") in words:
            continue
        parts = _WORD.findall(k)
        if (parts and all(p in words for p in parts)) or _spelled_out(key, text):
            continue
        if key in compounds or _transposed(k, words):  # typed apart, or with two letters swapped
            continue
        joined = "".join(parts)
        match = process.extractOne(joined, words, scorer=fuzz.ratio) if words and joined else None
        if match is None or match[1] < NAME_SIMILARITY:
            missing += max((keyword.idf(t) for t in terms(key)), default=top) / top
    return missing


def names(key: str, text: str) -> bool:
    """Whether `text` is, or holds, the question's name `key`: "the United States" names "US", "U.S." too."""
    return re.search(rf"(?<!\w){re.escape(_plain(key))}(?!\w)", _plain(text)) is not None or _spelled_out(key, text)


def _transposed(word: str, words: set[str]) -> bool:
    """A short name typed with two letters swapped ("Gou" for "Guo"), which a ratio scores low."""
    from rapidfuzz.distance import OSA

    return len(word) >= 3 and any(len(w) == len(word) and sorted(w) == sorted(word) and OSA.distance(w, word) == 1 for w in words)


def _spelled_out(key: str, text: str) -> bool:
    """Whether `text` spells out the acronym `key`: "EU" in "the European Union", "ECJ" in "European Court of Justice"."""
    if not _is_acronym(key):
        return False
    joiner = r"[\s-]+(?:(?:of|and|for|the|on|de)\s+)*"
    return re.search(r"\b" + joiner.join(f"{ch}\\w+" for ch in key) + r"\b", text) is not None


def _is_acronym(key: str) -> bool:
    return 2 <= len(key) <= 6 and key.isalpha() and key.isupper()


#: "5th" in a question, "fifth" in the article (and back).
_ORDINALS = {f"{n}{suffix}": word for n, suffix, word in (
    (1, "st", "first"), (2, "nd", "second"), (3, "rd", "third"), (4, "th", "fourth"), (5, "th", "fifth"),
    (6, "th", "sixth"), (7, "th", "seventh"), (8, "th", "eighth"), (9, "th", "ninth"), (10, "th", "tenth"),
    (11, "th", "eleventh"), (12, "th", "twelfth"))}
_ORDINALS.update({word: number for number, word in list(_ORDINALS.items())})


def _plain(text: str) -> str:
    """Lower case without the dots of abbreviations ("U.S." and "US" are one name)."""
    return re.sub(r"(?<=\w)\.(?=\w)|(?<=\b\w)\.", "", text.lower())


def _score_spans(s: SentenceEvidence, question: Question, weights: dict[str, float], total: float) -> list[Span]:
    """Score the sentence's candidates: the kind asked for, near the question's words, not in it."""
    text = s.hit.text
    # where the question's words stand in the sentence (word index), with their weight
    words = [(m.start() + s.start, m.end() + s.start, m.group(0)) for m in _WORD.finditer(s.text)]
    stems = [_term(w) for _, _, w in words]
    matched = [i for i, t in enumerate(stems) if t in weights]
    acronyms = [k for k in question.key_words if _is_acronym(k)]  # the only keys _spelled_out can find
    out: list[Span] = []
    for c in s.candidates:
        span_text = text[c.start : c.end]
        own = _span_terms(span_text)
        if not own and c.label not in _NUMERIC_LABELS:
            continue
        overlap = sum(t in weights for t in own) / len(own) if own else 0.0
        if (own and overlap >= 1.0) or any(_spelled_out(k, span_text) for k in acronyms):
            continue  # the question's own words are not its answer ("the European Union" for "EU")
        typed, kind = _kind_score(c, question)
        first = next((i for i, (a, _, _) in enumerate(words) if a >= c.start), len(words))
        last = next((i for i in range(len(words) - 1, -1, -1) if words[i][1] <= c.end), first)
        outside = [i for i in matched if not first <= i <= last]
        distance = min((first - i if i < first else i - last for i in outside), default=len(words))
        score = 0.45 * kind + 0.4 / (1 + distance / 2) - 0.4 * overlap - 0.01 * max(0, last - first)
        out.append(Span(c.start, c.end, span_text, c.label, score, typed, distance))
    out.sort(key=lambda sp: (-sp.score, sp.start))
    return out


def _kind_score(c: Candidate, question: Question) -> tuple[bool, float]:
    """(of the asked kind, 0..1.3): a DATE for "when", a PERSON for "who", "… River" for "what river"."""
    focus = bool(question.focus) and (stem(c.root) == question.focus or any(stem(x) == question.focus for x in c.lemmas))
    if question.labels:
        if c.label in question.labels:
            weight = _WHO_WEIGHTS.get(c.label, 1.0) if question.wh in ("who", "whom", "whose") else 1.0
            return True, weight + (0.3 if focus else 0.0)
        return (True, 0.8) if focus else (False, 0.0)
    if focus:
        return True, 0.8
    return False, (0.1 if c.label in _NUMERIC_LABELS else 0.3)


@lru_cache(maxsize=TERM_CACHE_SIZE)
def _term(word: str) -> str:
    """The stem of one word ("" for a stopword): cached, as the same words recur in every sentence."""
    found = terms(word)
    return found[0] if found else ""


@lru_cache(maxsize=TERM_CACHE_SIZE)
def _span_terms(text: str) -> tuple[str, ...]:
    """The terms of a candidate's text: the same candidates come back with their chunks."""
    return tuple(t for t in terms(text) if t)
