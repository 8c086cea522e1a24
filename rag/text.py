"""Small text utilities shared by retrieval and answering: terms and sentences, per language.

One tokenizer serves the keyword index, the refusal check and sentence scoring, so that a
word counts the same everywhere. English ("en", the default) keeps its own tuned stopwords and
sentence splitter; other languages use their Snowball stemmer (PyStemmer), the stopwords-iso
list (`stopwordsiso`) and Wikimedia's `sentencex` segmenter, which knows each language's
abbreviations ("2. Juli", "z. B.", "Dr.", "Sra.") so they do not end a sentence.
"""

from __future__ import annotations

import re
from functools import lru_cache

import Stemmer

from .lean_imports import import_bm25s

STOPWORDS_EN = import_bm25s().stopwords.STOPWORDS_EN

# Question words and auxiliaries carry no topic: "what"/"who" are not in bm25s' list.
_EXTRA_STOPWORDS = {
    "what", "who", "whom", "whose", "which", "when", "where", "why", "how", "did", "does", "do", "done",
    "is", "are", "was", "were", "be", "been", "has", "have", "had", "can", "could", "would", "should",
    "will", "shall", "may", "might", "must", "tell", "me", "about", "say", "said", "says", "according",
    "article", "articles", "any", "many", "much", "also", "besides", "other", "others", "s", "t", "us's",
}
STOPWORDS = frozenset(STOPWORDS_EN) | _EXTRA_STOPWORDS
TOKEN_PATTERN = r"(?u)\b\w\w+\b"
#: What a sentence ends with, closing quotes and brackets included (headlines and labels end otherwise).
TERMINAL = tuple('.!?…"”’\')')
_TOKEN_RE = re.compile(TOKEN_PATTERN)


@lru_cache(maxsize=1)
def stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


def terms(text: str, lang: str = "en") -> list[str]:
    """Lower-cased, stemmed content words of `text` in language `lang`, in order (duplicates kept)."""
    if lang == "en":  # byte-identical to before languages: the keyword-index cache relies on it
        words = [w for w in _TOKEN_RE.findall(text.lower()) if w not in STOPWORDS]
        return stemmer().stemWords(words)
    stop = stopwords(lang)
    words = [w for w in _TOKEN_RE.findall(text.lower()) if w not in stop]
    stem = language_stemmer(lang)
    return stem.stemWords(words) if stem is not None else words


#: ISO 639-1 code -> PyStemmer's (Snowball's) algorithm name, for every language it stems.
SNOWBALL = {
    "ar": "arabic", "hy": "armenian", "eu": "basque", "ca": "catalan", "da": "danish", "nl": "dutch",
    "en": "english", "fi": "finnish", "fr": "french", "de": "german", "el": "greek", "hi": "hindi",
    "hu": "hungarian", "id": "indonesian", "ga": "irish", "it": "italian", "lt": "lithuanian", "ne": "nepali",
    "no": "norwegian", "nb": "norwegian", "pt": "portuguese", "ro": "romanian", "ru": "russian", "sr": "serbian",
    "es": "spanish", "sv": "swedish", "ta": "tamil", "tr": "turkish", "yi": "yiddish",
}


@lru_cache(maxsize=None)
def language_stemmer(lang: str) -> Stemmer.Stemmer | None:
    """Snowball's stemmer for `lang`, or None when it has none (words are then used as they are)."""
    name = SNOWBALL.get(lang)
    return Stemmer.Stemmer(name) if name in Stemmer.algorithms() else None


@lru_cache(maxsize=None)
def stopwords(lang: str) -> frozenset[str]:
    """The words of `lang` that carry no topic: for English the list above, else stopwords-iso's.

    stopwords-iso includes question words ("wer", "wann", "quand", "cuándo") that bm25s' lists lack.
    """
    if lang == "en":
        return STOPWORDS
    import stopwordsiso

    return frozenset(stopwordsiso.stopwords(lang)) if stopwordsiso.has_lang(lang) else frozenset()


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


def split_sentences(text: str, lang: str = "en") -> list[tuple[int, int]]:
    """(start, end) spans of the sentences of `text` in language `lang`; paragraphs never share a sentence."""
    if lang != "en":
        return _segment(text, lang)
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


#: Languages that write ordinal numbers with a period ("2. Juli", "im 20. Jahrhundert", "3. Liga").
ORDINAL_DOT_LANGUAGES = frozenset({"de", "da", "no", "nb", "fi", "is", "cs", "sk", "pl", "hu", "sl", "hr", "sr", "bs", "et", "lv", "tr", "eu"})
_ORDINAL_END = re.compile(r"(?:^|\s)\d{1,2}\.$")  # "Im 20." but not "fiel 1989." nor "am 12.05."
_INITIAL_END = re.compile(r"(?:^|\s)[^\W\d_]\.$")  # "M." (monsieur), an initial


def _segment(text: str, lang: str) -> list[tuple[int, int]]:
    """Sentences by sentencex, with the few boundaries it gets wrong on news text undone.

    Measured on German, French and Spanish news sentences, sentencex still ends a sentence after
    an ordinal that is not a date ("Im 20. | Jahrhundert", "Die 2. | Bundesliga"), after a
    sentence-initial "M. | Dupont", after an abbreviated month before its year ("le 14 juil. |
    1789") and before a lower-case word ("2 jan. | aan."). A cut there would quote half a
    sentence; a missed boundary only quotes a longer one, so these are joined.
    """
    import sentencex

    spans: list[tuple[int, int]] = []
    joinable = False  # whether the last span may be continued (no paragraph break since)
    for seg in sentencex.get_sentence_boundaries(lang, text):
        if seg["is_paragraph_break"]:
            joinable = False
            continue
        before = len(spans)
        _add_span(text, seg["start_index"], seg["end_index"], spans)
        if len(spans) == before:
            continue
        if joinable and before and _continues(text, spans[before - 1], spans[before], lang):
            spans[before - 1 : before + 1] = [(spans[before - 1][0], spans[before][1])]
        joinable = True
    return spans


def _continues(text: str, previous: tuple[int, int], current: tuple[int, int], lang: str) -> bool:
    """Whether `current` is the rest of the sentence `previous` (see `_segment`)."""
    if "\n\n" in text[previous[1] : current[0]]:
        return False
    head = text[current[0]]
    if head.islower():
        return True
    tail = text[max(previous[0], previous[1] - 8) : previous[1]]
    if lang in ORDINAL_DOT_LANGUAGES and _ORDINAL_END.search(tail) and head.isalpha():
        return True
    if head.isdigit():
        last = text[previous[0] : previous[1]].rsplit(None, 1)[-1]
        return last.endswith(".") and last[:-1].lower() in month_abbreviations(lang)
    return bool(_INITIAL_END.search(tail)) and head.isupper()


@lru_cache(maxsize=None)
def month_abbreviations(lang: str) -> frozenset[str]:
    """`lang`'s abbreviated month names without their period ("janv", "juil", "sept"), from CLDR via Babel."""
    from babel import Locale, UnknownLocaleError
    from babel.dates import get_month_names

    try:
        Locale.parse(lang)
    except (UnknownLocaleError, ValueError):
        return frozenset()
    names = {
        name.rstrip(".").lower()
        for context in ("format", "stand-alone")
        for name in get_month_names("abbreviated", context, locale=lang).values()
    }
    return frozenset(names)
