"""Small text utilities shared by retrieval and answering: terms and sentences.

One tokenizer serves the keyword index, the refusal check and sentence scoring, so that a
word counts the same everywhere.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer
from bm25s.stopwords import STOPWORDS_EN

# Question words and auxiliaries carry no topic: "what"/"who" are not in bm25s' list.
_EXTRA_STOPWORDS = {
    "what", "who", "whom", "whose", "which", "when", "where", "why", "how", "did", "does", "do", "done",
    "is", "are", "was", "were", "be", "been", "has", "have", "had", "can", "could", "would", "should",
    "will", "shall", "may", "might", "must", "tell", "me", "about", "say", "said", "says", "according",
    "article", "articles", "any", "many", "much", "also", "besides", "other", "others", "s", "t", "us's",
}
STOPWORDS = frozenset(STOPWORDS_EN) | _EXTRA_STOPWORDS
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
_TOKEN_RE = re.compile(TOKEN_PATTERN)


@lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms(text: str) -> list[str]:
    """Lower-cased, stemmed content words of `text`, in order (duplicates kept)."""
    words = [w for w in _TOKEN_RE.findall(text.lower()) if w not in STOPWORDS]
    return stemmer().stemWords(words)


# -- sentences -------------------------------------------------------------------------------------
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "dr", "prof", "st", "co", "corp", "inc", "ltd", "jr", "sr", "vs", "no", "gen", "gov",
    "sen", "rep", "col", "lt", "sgt", "capt", "mt", "ft", "fig", "approx", "dept", "est", "jan", "feb", "mar",
    "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "etc", "e.g", "i.e", "al",
}
_BOUNDARY = re.compile(r"[.!?…]+[\"”’')\]]*\s+(?=[\"“‘'(\[]?[A-Z0-9])")
_PARAGRAPH = re.compile(r"\n\s*\n")


def _is_abbreviation(text: str, dot: int) -> bool:
    """Whether the period at `dot` ends an abbreviation ("Co.", "U.S.", an initial) rather than a sentence."""
    if text[dot] != ".":
        return False
    start = dot
    while start > 0 and not text[start - 1].isspace():
        start -= 1
    word = text[start:dot].strip("(\"“‘'").lower()
    if word in _ABBREVIATIONS or (len(word) == 1 and word.isalpha()):
        return True
    return bool(re.fullmatch(r"(?:[a-z]\.)+[a-z]", word))  # u.s, u.k, e.u


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of `text`; paragraphs never share a sentence."""
    spans: list[tuple[int, int]] = []
    para_start = 0
    for para_end in [m.start() for m in _PARAGRAPH.finditer(text)] + [len(text)]:
        start = para_start
        for m in _BOUNDARY.finditer(text, para_start, para_end):
            if _is_abbreviation(text, m.start()):
                continue
            end = m.end()
            _add_span(text, start, end, spans)
            start = end
        _add_span(text, start, para_end, spans)
        match = _PARAGRAPH.match(text, para_end)
        para_start = match.end() if match else para_end
    return spans


def _add_span(text: str, start: int, end: int, spans: list[tuple[int, int]]) -> None:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        spans.append((start, end))
