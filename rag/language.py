"""Which language a text is written in: articles at ingest, questions at query time.

Language identification is py3langid (a maintained fork of langid.py: a naive Bayes model over
byte n-grams for 97 languages, shipped inside the wheel, deterministic, ~1-2 ms for a news
article). Its model takes ~0.5 s to load, so it is loaded on first use only: an English-only
index never loads it when answering.

Two uses with different needs:

- `detect_language(text)`: an article's language, "en" when unsure. Whole articles are
  identified with near-certainty (probability 1.0 on every article of `corpus/`, the German
  probe and the squad2-dev articles), so the bar for leaving English can be high.
- `question_languages(question, candidates)`: a question is short ("Wer ist Katrin Albers?"),
  and over 97 languages its best guess is often wrong; among the few languages the index
  holds it is easy, and first decided by the question's function words (each language's
  stopwords: "wer", "ist" against "who", "is"), which costs nothing and loads no model. Only
  when those are shared ("Will …" is English and German) does py3langid decide between the
  tied languages. When nothing decides (a question of names only, "5G Poland") every tied
  language is returned and the caller uses the words of each.

Measured on the 37 English dev questions, 15 German probe questions and 6 short probes over an
en+de index: function words alone decided 55, none wrongly; 3 tied ("5G Poland", "Klärwerk
Kosten": no function word; "Will Germany ban Huawei?": shared ones).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

#: Bump when detection or what depends on a document's language (its stemmer, stopwords,
#: sentence segmenter) changes: non-English documents are then re-chunked (rag/ingest.py).
LANGUAGE_VERSION = "1"

DEFAULT_LANGUAGE = "en"

#: Below this probability an article stays English. On a whole article py3langid gives 1.0;
#: boilerplate-only or very short texts score lower, and English is what the rest assumes.
MIN_ARTICLE_CONFIDENCE = 0.9

#: Longer texts are identified from their first this-many characters: ~10 ms at most, and a
#: news article's language does not change half way.
MAX_DETECT_CHARS = 10_000

#: When function words tie, py3langid's best language among the tied ones must be this many times
#: more likely than the next, else both count. On the 37 English dev questions and 12 German probe
#: questions (restricted to en/de) its winner was 3x-1000x ahead; "5G Poland" was 1.2x.
QUESTION_MARGIN = 2.0

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _identifier() -> Any:  # -> py3langid.langid.LanguageIdentifier
    with _LOCK:
        from py3langid.langid import MODEL_FILE, LanguageIdentifier

        # Its own instance (not the module-level one): restricting languages there would be shared state.
        return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def detect_language(text: str) -> str:
    """The ISO 639-1 code of the language `text` is written in; "en" when unsure."""
    sample = text[:MAX_DETECT_CHARS]
    if sum(ch.isalpha() for ch in sample) < 20:  # nothing to judge by
        return DEFAULT_LANGUAGE
    lang, confidence = _identifier().classify(sample)
    return lang if confidence >= MIN_ARTICLE_CONFIDENCE else DEFAULT_LANGUAGE


def question_languages(question: str, candidates: Iterable[str]) -> tuple[str, ...]:
    """The languages among `candidates` that `question` is plausibly written in, likeliest first.

    With a single candidate that is the answer (and nothing is computed).
    """
    from .text import TOKEN_PATTERN, stopwords  # text's stopwords are per language; it never imports this

    langs = sorted(set(candidates)) or [DEFAULT_LANGUAGE]
    if len(langs) == 1:
        return (langs[0],)
    words = re.findall(TOKEN_PATTERN, question.lower())
    votes = {lang: sum(w in stopwords(lang) for w in words) for lang in langs}
    best = max(votes.values())
    # A language with no stopword list cannot be ruled out by one.
    tied = [lang for lang in langs if votes[lang] == best or not stopwords(lang)]
    if len(tied) == 1 or best == 0:
        return tuple(tied)
    return _by_model(question, tied)


def _by_model(question: str, langs: list[str]) -> tuple[str, ...]:
    """py3langid's choice among `langs`: the likeliest, with any other within QUESTION_MARGIN of it."""
    identifier = _identifier()
    known = set(identifier.labels)
    scores = {lang: score for lang, score in identifier.rank(question[:MAX_DETECT_CHARS]) if lang in langs}
    ranked = sorted(langs, key=lambda lang: (-scores.get(lang, 0.0), lang))
    best = scores.get(ranked[0], 0.0)
    # A language the model does not know cannot be ruled out by it either.
    return tuple(lang for lang in ranked if lang not in known or scores[lang] * QUESTION_MARGIN >= best)
