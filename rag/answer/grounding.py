"""Make an LLM's reply safe to show: strip links and images, check citations and quotes.

Whatever model produced the text, the user only ever sees citations to sources that exist
and quotes marked verified only when they stand in the cited source (OWASP LLM05 improper
output handling, LLM09 misinformation).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..quotes import verify_quote
from ..retrieve import Hit
from .prompts import cut_at_turn_marker, strip_fences

_IMAGE = re.compile(r"!\[[^\]]*\]\([^)]*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML = re.compile(r"</?[a-zA-Z][^>]*>")
_URL = re.compile(r"\b(?:https?|ftp)://[^\s<>()\]]+|\bwww\.[^\s<>()\]]+", re.I)
#: A citation group as a reply writes it: "[2]", "[1, 3]" (the numbers in group 1).
CITATION_GROUP = re.compile(r"\[(\d+(?:\s*,\s*\d+)*)\]")
_QUOTE = re.compile(r"[\"“]([^\"“”]{8,}?)[\"”]")
UNVERIFIED_MARK = " [unverified quote]"


@dataclass
class Grounded:
    text: str
    cited: list[int]  # source numbers (1-based, renumbered in order of first citation)
    hit_for: dict[int, Hit]
    quotes: dict[int, list[str]] = field(default_factory=dict)  # verified quotes per source
    removed_citations: list[int] = field(default_factory=list)
    unverified_quotes: list[str] = field(default_factory=list)


def strip_links(text: str, allowed_urls: set[str]) -> str:
    """Remove images and links that do not point to a source; keep link text."""
    text = _IMAGE.sub("", text)
    text = _LINK.sub(lambda m: f"{m.group(1)} ({m.group(2)})" if m.group(2) in allowed_urls else m.group(1), text)
    text = _HTML.sub("", text)
    text = _URL.sub(lambda m: m.group(0) if m.group(0).rstrip(".,;") in allowed_urls else "", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def preview(partial: str) -> str:
    """A reply still being generated, fit to show while it streams: no links, images, HTML or markup.

    Nothing in it is checked yet; the grounded answer replaces it when the reply is complete.
    """
    return strip_links(strip_fences(cut_at_turn_marker(partial))[0], set())


def source_urls(hits: Sequence[Hit]) -> set[str]:
    """The sources' own URLs: the only links a reply may keep."""
    return {str(h.metadata.get("url")) for h in hits if h.metadata.get("url")}


def ground(text: str, hits: Sequence[Hit]) -> Grounded:
    """Renumber valid citations 1..k, drop invalid ones, verify quotes against the cited source."""
    text = strip_links(text, source_urls(hits))
    mapping: dict[int, int] = {}
    removed: list[int] = []

    def renumber(m: re.Match[str]) -> str:
        kept = []
        for raw in m.group(1).split(","):
            old = int(raw)
            if 1 <= old <= len(hits):
                kept.append(mapping.setdefault(old, len(mapping) + 1))
            else:
                removed.append(old)
        return "".join(f"[{n}]" for n in dict.fromkeys(kept))

    text = CITATION_GROUP.sub(renumber, text)
    text = re.sub(r"\s+([.,;:])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
    hit_for = {new: hits[old - 1] for old, new in mapping.items()}
    result = Grounded(text, sorted(hit_for), hit_for, removed_citations=removed)

    # Each quote is checked against the source cited right after it (same sentence), else any cited one.
    out, last = [], 0
    for m in _QUOTE.finditer(text):
        quote = m.group(1).strip()
        after = text[m.end() : m.end() + 200]
        sentence_end = re.search(r"[.!?](\s|$)", after)
        window = after[: sentence_end.start() + 1] if sentence_end else after
        nearby = [int(n) for n in re.findall(r"\[(\d+)\]", window)] or list(hit_for)
        owner = next((n for n in nearby if n in hit_for and verify_quote(quote, hit_for[n].text)), None)
        out.append(text[last : m.end()])
        if owner is None:
            out.append(UNVERIFIED_MARK)
            result.unverified_quotes.append(quote)
        else:
            result.quotes.setdefault(owner, []).append(quote)
        last = m.end()
    out.append(text[last:])
    result.text = "".join(out)
    return result
