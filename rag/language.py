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
  holds it is reliable. When two are close (a question of names only, "5G Poland") both are
  returned and the caller uses the words of each.
"""

from __future__ import annotations

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

#: A question's best language among the index's must be this many times more likely than the
#: next one, else both count. On the 37 English dev questions and 12 German probe questions
#: (restricted to en/de) the winner was 3x-1000x ahead; "5G Poland" was 1.2x.
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

    With a single candidate that is the answer (and no model is loaded).
    """
    langs = sorted(set(candidates)) or [DEFAULT_LANGUAGE]
    if len(langs) == 1:
        return (langs[0],)
    known = set(_identifier().labels)
    scores = {lang: score for lang, score in _identifier().rank(question[:MAX_DETECT_CHARS]) if lang in langs}
    # A language the model does not know cannot be ruled out by it: keep it as a candidate.
    ranked = sorted(langs, key=lambda lang: (-scores.get(lang, 0.0), lang))
    best = scores.get(ranked[0], 0.0)
    plausible = [lang for lang in ranked if lang not in known or scores[lang] * QUESTION_MARGIN >= best]
    return tuple(plausible)
