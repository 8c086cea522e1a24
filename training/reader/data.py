"""SQuAD JSON -> reader training examples -> tokenized features.

What the reader sees at answer time is a few sentences with their neighbours, sometimes a whole
paragraph, and often text that does not hold the answer. The examples are made to look like that:
each answerable question is paired either with its whole paragraph or with the sentences around its
answer, and "no answer" examples pair a question with text of the same article that lacks the answer
(another paragraph, or the paragraph's other sentences), beside SQuAD 2.0's real unanswerable ones.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

#: Where the project's machines keep the SQuAD training data: `shared/` beside the checkout (`--data` elsewhere).
DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "squad-train"
#: SQuAD 1.1 train (all answerable) and SQuAD 2.0 train's first 10 articles, as shared/ holds them.
SQUAD11 = "train-v1.1.json.gz"
SQUAD20 = "train-v2.0-10-articles.json.gz"
#: SQuAD 2.0's whole training set (~43,500 unanswerable questions on 442 articles), taken instead of the
#: 10-article sample when it is put beside it: the real look-alikes are the reader's best teachers of "no answer".
SQUAD20_WHOLE = ("train-v2.0.json.gz", "train-v2.0.json")

#: Articles of the training files kept out of training, for model selection and the no-answer
#: threshold: a stable choice by title hash (about 1 in 25 articles), not a look at their content.
HELD_OUT_EVERY = 25

#: Unanswerable look-alike questions written by hand on training paragraphs (`--lookalikes`; the README says how).
LOOKALIKES = Path(__file__).with_name("lookalikes.jsonl")
#: The kinds of example that are unanswerable questions people wrote: SQuAD 2.0's own, and ours.
WRITTEN_UNANSWERABLE = ("impossible", "written")

# A sentence ends at . ! ? followed by space and a capital/digit/quote. Training-data preparation only:
# the runtime splits sentences with spaCy at ingest; here a coarse split is enough to cut windows.
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]?\s+(?=[A-Z0-9\"'(\[])")


@dataclass(frozen=True)
class Example:
    """One question paired with one context; answers empty means "no answer in this context"."""

    qid: str
    question: str
    context: str
    answers: tuple[tuple[str, int], ...]  # (text, character start in context)
    kind: str  # "paragraph" | "window" | "other-paragraph" | "other-sentences" | "swapped" | "negated" | "antonym" | "other-article" | "impossible" | "written"


def read_squad(path: Path) -> list[dict[str, Any]]:
    """The `data` list of a SQuAD file (gzip or plain JSON)."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return json.load(fh)["data"]


def is_held_out(title: str) -> bool:
    """Whether an article is kept for evaluation (stable across runs and machines)."""
    return int(hashlib.sha256(title.encode()).hexdigest(), 16) % HELD_OUT_EVERY == 0


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of the sentences of a paragraph."""
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text):
        spans.append((start, m.start()))
        start = m.end()
    spans.append((start, len(text)))
    return [(s, e) for s, e in spans if text[s:e].strip()]


def _window(context: str, start: int, end: int, rng: random.Random) -> tuple[str, int] | None:
    """The sentences around [start, end) with up to one neighbour each side, and its offset."""
    spans = sentence_spans(context)
    first = next((i for i, (s, e) in enumerate(spans) if s <= start < e + 1), None)
    last = next((i for i, (s, e) in enumerate(spans) if s < end <= e + 1), None)
    if first is None or last is None:
        return None
    lo = max(0, first - rng.randint(0, 1))
    hi = min(len(spans) - 1, last + rng.randint(0, 1))
    a, b = spans[lo][0], spans[hi][1]
    return context[a:b], a


def _lacks(text: str, answers: Iterable[str]) -> bool:
    low = text.lower()
    return all(a.lower().strip() not in low for a in answers if a.strip())


def make_examples(articles: list[dict[str, Any]], *, seed: int, window_share: float,
                  negative_share: float, swap_share: float = 0.0, miss_share: float = 0.0,
                  negate_share: float = 0.0, antonym_share: float = 0.0) -> Iterator[Example]:
    """Training examples from SQuAD articles.

    `window_share` of the answerable questions read only the sentences around their answer;
    `negative_share` of them also give a "no answer" example (half another paragraph of the same
    article, half the rest of their own paragraph). SQuAD 2.0's unanswerable questions come as they are.

    Two more kinds of "no answer" teach what qabot meets after retrieval (their own seeded draws, so
    the kinds above are the same with or without them):
    - `swap_share` of the questions are asked again with one of their names or numbers swapped for one
      their passage lacks ("…most popular in the UK" -> "…in Europe"), against the same passage: the
      look-alike question SQuAD 2.0's annotators wrote, which a reader answers by type alone;
    - `miss_share` of them are paired with the paragraph of *another* article that shares the most rare
      words with the question: a retrieval miss, on topic and without the answer;
    - `negate_share` of them are asked again negated ("What did Kublai build?" -> "What did Kublai not
      build?"), against the same passage: SQuAD 2.0's "negation" look-alike (Rajpurkar et al. 2018, 9% of
      its unanswerable questions), which a reader answers with the span it knows;
    - `antonym_share` of them are asked again with a word the passage uses swapped for its WordNet antonym,
      one the passage lacks ("…became common…" -> "…became uncommon…", "Who did Kublai accept…" -> "…reject…"):
      SQuAD 2.0's "antonym" look-alike, the most common kind of its unanswerable questions (20%).
    """
    rng = random.Random(seed)
    extra = random.Random(seed * 7919 + 1)  # the draws of the two later kinds only
    negations = random.Random(seed * 104729 + 3)  # and of the negated ones
    opposites = random.Random(seed * 15485863 + 5)  # and of the antonym ones
    antonyms = read_antonyms() if antonym_share else {}
    terms = _term_pool(articles) if swap_share else {}
    misses = _MissIndex(articles) if miss_share else None
    for article in articles:
        paragraphs = [p["context"] for p in article["paragraphs"]]
        for pi, para in enumerate(article["paragraphs"]):
            context = para["context"]
            for qa in para["qas"]:
                if qa.get("is_impossible"):
                    yield Example(qa["id"], qa["question"], context, (), "written" if qa.get("written") else "impossible")
                    continue
                answers = tuple((a["text"], a["answer_start"]) for a in qa["answers"] if a["text"].strip())
                if not answers:
                    continue
                text, start = answers[0]
                if context[start:start + len(text)] != text:
                    continue  # an offset the rebuild got wrong: skip rather than teach a wrong span
                if rng.random() < window_share:
                    cut = _window(context, start, start + len(text), rng)
                    if cut is not None:
                        window, offset = cut
                        yield Example(qa["id"], qa["question"], window, ((text, start - offset),), "window")
                    else:
                        yield Example(qa["id"], qa["question"], context, ((text, start),), "paragraph")
                else:
                    yield Example(qa["id"], qa["question"], context, ((text, start),), "paragraph")
                texts = [a for a, _ in answers]
                if swap_share and extra.random() < swap_share:
                    swapped = _swap(qa["question"], context, terms, extra)
                    if swapped is not None:
                        yield Example(qa["id"] + "/swapped", swapped, context, (), "swapped")
                if negate_share and negations.random() < negate_share:
                    negated = _negate(qa["question"], context)
                    if negated is not None:
                        yield Example(qa["id"] + "/negated", negated, context, (), "negated")
                if antonym_share and opposites.random() < antonym_share:
                    opposite = _antonym(qa["question"], context, antonyms, opposites)
                    if opposite is not None:
                        yield Example(qa["id"] + "/antonym", opposite, context, (), "antonym")
                if misses is not None and extra.random() < miss_share:
                    other = misses.nearest(qa["question"], article["title"])
                    if other is not None and _lacks(other, texts):
                        yield Example(qa["id"] + "/other-article", qa["question"], other, (), "other-article")
                if rng.random() >= negative_share:
                    continue
                if rng.random() < 0.5 and len(paragraphs) > 1:
                    other = paragraphs[rng.choice([i for i in range(len(paragraphs)) if i != pi])]
                    if _lacks(other, texts):
                        yield Example(qa["id"] + "/other-paragraph", qa["question"], other, (), "other-paragraph")
                else:
                    rest = [context[s:e] for s, e in sentence_spans(context) if not (s <= start < e + 1)]
                    rest_text = " ".join(rest)
                    if rest and _lacks(rest_text, texts):
                        yield Example(qa["id"] + "/other-sentences", qa["question"], rest_text, (), "other-sentences")


#: A name or a number in a question: a run of capitalised words, or digits. Not the question's first word.
_SWAPPABLE = re.compile(r"(?<=\s)(?:[A-Z][\w'’-]+(?:\s+[A-Z][\w'’-]+)*|\d[\d,.]*\d|\d)(?=[\s?,.'’]|$)")
#: Rare words (in at most this many paragraphs) find the paragraph of another article a retriever would miss with.
RARE_IN = 200


def _shape(term: str) -> str:
    return "number" if term[0].isdigit() else f"name{min(len(term.split()), 3)}"


def _term_pool(articles: list[dict[str, Any]]) -> dict[str, list[tuple[str, str]]]:
    """Names and numbers of every question, by shape, with their article's title."""
    pool: dict[str, list[tuple[str, str]]] = {}
    for article in articles:
        for para in article["paragraphs"]:
            for qa in para["qas"]:
                for term in _SWAPPABLE.findall(qa["question"]):
                    pool.setdefault(_shape(term), []).append((term, article["title"]))
    return pool


def _swap(question: str, context: str, pool: dict[str, list[tuple[str, str]]], rng: random.Random) -> str | None:
    """The question with one of its names or numbers (one the passage holds) swapped for one it lacks."""
    low = context.lower()
    found = [t for t in _SWAPPABLE.findall(question) if t.lower() in low]
    if not found:
        return None
    term = rng.choice(found)
    choices = pool.get(_shape(term), [])
    for _ in range(20):
        other, _title = rng.choice(choices) if choices else (None, None)
        if other and other.lower() not in low and other.lower() != term.lower():
            return question.replace(term, other, 1)
    return None


#: The first auxiliary verb of a question, to negate it as a contraction ("did" -> "didn't": "What didn't
#: Kublai build?" stays English where "did not" would need the subject parsed to follow it).
_AUXILIARY = re.compile(r"\b(is|are|was|were|do|does|did|has|have|had|can|could|will|would|should|may|might|must)\b(?!\s+(?:not|n't|never)\b)",
                        re.IGNORECASE)
#: Negations that are not the verb plus "n't".
_CONTRACTED = {"can": "can't", "will": "won't", "may": "may not", "might": "might not"}
#: A passage that itself negates something may well answer the negated question: left alone.
_NEGATION = re.compile(r"\b(?:not|never|no|none|nor|without)\b|n't\b", re.IGNORECASE)


def _negate(question: str, context: str) -> str | None:
    """The question with its first auxiliary negated, or None (no auxiliary, already negative, or a passage
    that negates something itself)."""
    if _NEGATION.search(question) or _NEGATION.search(context):
        return None
    m = _AUXILIARY.search(question)
    if m is None or m.start() == 0:  # "Was the…?" is a yes/no question: not a span to withhold
        return None
    word = m.group(1)
    negated = _CONTRACTED.get(word.lower(), f"{word}n't")
    return question[:m.start()] + (negated[0].upper() + negated[1:] if word[0].isupper() else negated) + question[m.end():]



#: WordNet's antonym pairs (antonyms.py made it; WordNet 3.0 licence at its head).
ANTONYMS = Path(__file__).with_name("antonyms.tsv")
#: Words left alone: the frame of a question ("how many", "how much") and short particles ("on", "off",
#: "in", "out"), whose WordNet antonyms make a broken question, not a look-alike.
_KEEP = frozenset({"many", "much", "few", "little", "ever"})
#: Inflections an antonym takes over from the word it replaces ("agreed" -> "disagreed"): regular ones, verbs only.
_SUFFIXES = ("", "s", "ed", "d")


def read_antonyms(path: Path = ANTONYMS) -> dict[str, list[tuple[str, str]]]:
    """word -> its (part of speech, antonym) pairs, from the table."""
    table: dict[str, list[tuple[str, str]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            pos, word, antonym = line.split("\t")
            table.setdefault(word, []).append((pos, antonym))
    return table


def _inflected(antonym: str, suffix: str) -> str:
    """The antonym with the replaced word's regular ending: "agree" + "d", "close" + "ed" -> "closed"."""
    if suffix in ("ed", "d"):
        return antonym + ("d" if antonym.endswith("e") else "ed")
    return antonym + suffix


def _antonym(question: str, context: str, table: dict[str, list[tuple[str, str]]], rng: random.Random) -> str | None:
    """The question with one lower-case word the passage also uses swapped for an antonym the passage lacks,
    or None. Names (capitalised), the question word and yes/no questions are left alone."""
    if _AUXILIARY.match(question):
        return None  # "Has Japan ever…?" asks yes or no: not a span to withhold
    low = context.lower()
    choices = []
    for m in re.finditer(r"(?<=\s)[a-z]+(?=[\s?,.;:]|$)", question):
        word = m.group(0)
        if len(word) <= 3 or word in _KEEP or not re.search(rf"\b{word}\b", low):
            continue  # the look-alike keeps the passage's words but one
        for suffix in _SUFFIXES:
            lemma = word[:len(word) - len(suffix)] if suffix else word
            if not lemma or not word.endswith(suffix) or lemma not in table:
                continue
            if suffix == "d" and not lemma.endswith("e"):
                continue  # "used" is "use" + "d"; "opened" is not "opene" + "d"
            for pos, antonym in table[lemma]:
                if suffix and pos != "v":
                    continue  # only a verb takes "-s" and "-ed": "directed" is not the adjective "direct"
                swapped = _inflected(antonym, suffix)
                if not re.search(rf"\b{swapped}\b", low) and not re.search(rf"\b{antonym}\b", low):
                    choices.append((m.start(), m.end(), swapped))
    if not choices:
        return None
    start, end, swapped = rng.choice(choices)
    return question[:start] + swapped + question[end:]


class _MissIndex:
    """Paragraphs by their rare words, to find another article's paragraph that looks like an answer's."""

    def __init__(self, articles: list[dict[str, Any]]) -> None:
        self.paragraphs: list[tuple[str, str]] = []  # (title, text)
        postings: dict[str, list[int]] = {}
        for article in articles:
            for para in article["paragraphs"]:
                k = len(self.paragraphs)
                self.paragraphs.append((article["title"], para["context"]))
                for word in set(_WORDS.findall(para["context"].lower())):
                    postings.setdefault(word, []).append(k)
        self.postings = {w: ks for w, ks in postings.items() if len(ks) <= RARE_IN}

    def nearest(self, question: str, title: str) -> str | None:
        counts: dict[int, int] = {}
        for word in set(_WORDS.findall(question.lower())):
            for k in self.postings.get(word, ()):
                if self.paragraphs[k][0] != title:
                    counts[k] = counts.get(k, 0) + 1
        if not counts:
            return None
        best = max(counts, key=lambda k: (counts[k], -k))
        return self.paragraphs[best][1] if counts[best] >= 2 else None


_WORDS = re.compile(r"[a-z0-9][a-z0-9'-]{2,}")


def read_lookalikes(path: Path, articles: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Look-alike questions written by hand (`lookalikes.jsonl`) as SQuAD articles of unanswerable questions.

    Each line names its paragraph as "Title#index" (the index in SQuAD 1.1 train's article) and gives the
    question, its kind and the tempting span a careless reader would answer with. A line whose paragraph is
    not there or whose span the paragraph lacks is an error: the file and the data went out of step.
    """
    by_title = {a["title"]: a for a in articles}
    grouped: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        row = json.loads(line)
        title, _, index = row["id"].rpartition("#")
        paragraphs = by_title.get(title, {}).get("paragraphs", [])
        if not index.isdigit() or int(index) >= len(paragraphs):
            raise ValueError(f"{path}:{n}: no paragraph {row['id']!r} in the SQuAD 1.1 training data")
        if row["plausible_answer"] not in paragraphs[int(index)]["context"]:
            raise ValueError(f"{path}:{n}: its plausible answer is not in paragraph {row['id']!r}")
        qas = grouped.setdefault((title, int(index)), [])
        qas.append({"id": f"written/{row['id']}/{len(qas)}", "question": row["question"], "is_impossible": True,
                    "written": True})
    return [{"title": title, "paragraphs": [{"context": by_title[title]["paragraphs"][index]["context"], "qas": qas}]}
            for (title, index), qas in grouped.items()]


def squad20_file(data_dir: Path) -> Path:
    """SQuAD 2.0's whole training set if the data folder holds it, else the 10-article sample."""
    return next((data_dir / name for name in SQUAD20_WHOLE if (data_dir / name).is_file()), data_dir / SQUAD20)


def load_splits(data_dir: Path, *, seed: int, window_share: float, negative_share: float,
                swap_share: float = 0.0, miss_share: float = 0.0, negate_share: float = 0.0,
                antonym_share: float = 0.0, lookalikes: Path | None = None) -> tuple[list[Example], list[Example]]:
    """(training examples, held-out examples), the held-out ones from held-out articles only."""
    v11 = read_squad(data_dir / SQUAD11)
    v20 = read_squad(squad20_file(data_dir))
    # SQuAD 2.0's articles repeat SQuAD 1.1's answerable questions: keep only its unanswerable ones.
    v20_impossible = [{"title": a["title"], "paragraphs": [
        {"context": p["context"], "qas": [q for q in p["qas"] if q.get("is_impossible")]}
        for p in a["paragraphs"]]} for a in v20]
    written = read_lookalikes(lookalikes, v11) if lookalikes is not None else []
    train_articles = [a for a in v11 + v20_impossible + written if not is_held_out(a["title"])]
    held_articles = [a for a in v11 + v20_impossible + written if is_held_out(a["title"])]
    shares = {"window_share": window_share, "negative_share": negative_share, "swap_share": swap_share,
              "miss_share": miss_share, "negate_share": negate_share, "antonym_share": antonym_share}
    train = list(make_examples(train_articles, seed=seed, **shares))
    held = list(make_examples(held_articles, seed=seed + 1, **shares))
    return train, held


#: Characters of a sentence's start that find the paragraphs a window may come from (same_paragraph_answerable).
_START_CHARS = 40


def same_paragraph_answerable(examples: list[Example], impossible: list[Example]) -> list[Example]:
    """The answerable examples read against the paragraphs of the unanswerable ones (whole, or a window of
    them): SQuAD 2.0's annotators wrote each look-alike beside real questions on the same paragraph, so the
    pair shows what makes one answerable and the other not."""
    # A window starts where a sentence of its paragraph starts (`_window`): look it up by that start, not
    # by searching every paragraph (SQuAD 2.0's whole set has ~20,000 paragraphs with look-alikes).
    by_start: dict[str, set[str]] = {}
    for p in {e.context for e in impossible}:
        for s, _ in [(0, 0), *sentence_spans(p)]:
            by_start.setdefault(p[s:s + _START_CHARS], set()).add(p)
    return [e for e in examples if e.answers and e.kind in ("paragraph", "window")
            and any(e.context in p for p in by_start.get(e.context[:_START_CHARS], ()))]


# ----------------------------------------------------------------------------------------------
# features


@dataclass
class Feature:
    """One window of tokens for one example; start/end 0 point at [CLS]: no answer in this window."""

    example: int
    input_ids: list[int]
    token_type_ids: list[int]
    start: int
    end: int


def featurize(examples: list[Example], tokenizer: Any, *, max_len: int, stride: int,
              max_question: int) -> list[Feature]:
    """Tokenize question + context pairs into windows of at most `max_len` tokens.

    `tokenizer` is a `tokenizers.Tokenizer` (the one shipped beside the model): the features use the
    same tokenizer and the same pairing the runtime reader uses.
    """
    from rag.answer.reader import encode_pairs  # one definition of how a pair is tokenized

    features: list[Feature] = []
    batch = 512
    for lo in range(0, len(examples), batch):
        chunk = examples[lo:lo + batch]
        windows = encode_pairs(tokenizer, [e.question for e in chunk], [e.context for e in chunk],
                               max_len=max_len, stride=stride, max_question=max_question)
        for w in windows:
            ex = chunk[w.pair]
            start = end = 0
            if ex.answers:
                text, char_start = ex.answers[0]
                char_end = char_start + len(text)
                tokens = [i for i, (s, e) in enumerate(w.offsets) if w.is_context[i] and s < char_end and e > char_start]
                if tokens and w.offsets[tokens[0]][0] <= char_start and w.offsets[tokens[-1]][1] >= char_end:
                    start, end = tokens[0], tokens[-1]
            features.append(Feature(lo + w.pair, w.input_ids, w.token_type_ids, start, end))
    return features
