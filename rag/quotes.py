"""Check that a quote really stands in its source, up to whitespace and typography.

Scraped articles mix curly and straight quotes, dashes and line breaks; a reader checking
a quote does not care about those, so both sides are normalised before comparing. Words,
their order and their case must match exactly. "…" in a quote separates fragments that must
appear in order.
"""

from __future__ import annotations

import re
import unicodedata

_TRANSLATE = str.maketrans(
    {
        "“": '"', "”": '"', "„": '"', "‟": '"', "″": '"', "«": '"', "»": '"',
        "‘": "'", "’": "'", "‚": "'", "‛": "'", "′": "'", "`": "'",
        "–": "-", "—": "-", "‐": "-", "‑": "-", "−": "-",
    }
)
_SPACE = re.compile(r"\s+")
_ELLIPSIS = re.compile(r"\s*(?:…|\.\.\.|\[\.\.\.\])\s*")


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).translate(_TRANSLATE)
    return _SPACE.sub(" ", text).strip()


def fragments(quote: str) -> list[str]:
    """The parts of a quote separated by ellipses, normalised, without surrounding quote marks."""
    parts = [normalize(p).strip(" \"'") for p in _ELLIPSIS.split(quote)]
    return [p for p in parts if p]


def verify_quote(quote: str, source: str) -> bool:
    """True when every fragment of `quote` occurs in `source`, in order."""
    parts = fragments(quote)
    if not parts:
        return False
    haystack = normalize(source)
    pos = 0
    for part in parts:
        found = haystack.find(part, pos)
        if found < 0:
            return False
        pos = found + len(part)
    return True
