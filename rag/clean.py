"""Strip web boilerplate from scraped articles and read their metadata.

Scraped pages mix the article with site navigation, language menus, "Advertisement"
markers, newsletter prompts and related-headline sidebars. Those lines are short and
stand in lists; article prose is made of sentences. The cleaner therefore keeps:

- every prose line (a sentence-like line), unless it is a promotion;
- the headline (the last headline-like line before the article starts);
- short lines that sit between two prose paragraphs (sub-headings, "Declaration.");
- bylines: "Author"/"By ..." labels and a name line followed by a bio that starts with
  the same first name.

Everything kept is verbatim from the input, so quotes can be checked against it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .text import TERMINAL

CLEANER_VERSION = "1"

# Promotions written as whole sentences: dropped even though they look like prose.
_PROMO_SENTENCE = re.compile(
    r"(?i)(delivered directly to your inbox|subscribe now|subscribe to our|sign up (here|now|today|for our)"
    r"|get our newsletter|all rights reserved|cookie policy|this text (is )?available in)|©"
)
# Short promotional or navigation lines; only consulted for lines that are not prose.
_PROMO_LINE = re.compile(
    r"(?i)\b(advertisement|subscribe|sign up|newsletter|special offers|follow us|read more"
    r"|exit mobile version|show news feed|skip to (main )?content)\b"
    r"|^\W*(advert|sponsored|back|print|share|tags|related|latest|home)\W*$"
)
_NAME = re.compile(r"^[A-Z][\w'’.-]+(?: (?:[A-Z][\w'’.-]+|de|van|von|da|di|le|la)){1,3}$")
_BYLINE = re.compile(r"^(?:By|Written by|Author:?)\s+(?P<name>[A-Z][\w'’.-]+(?: [A-Z][\w'’.-]+){1,3})\s*$")
_SITE_ICON = re.compile(r"^Site (?:icon|logo)\s+(?P<site>.+)$", re.I)
_MONTHS = {
    m: i + 1
    for i, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"), ("may",),
            ("jun", "june"), ("jul", "july"), ("aug", "august"), ("sep", "sept", "september"),
            ("oct", "october"), ("nov", "november"), ("dec", "december"),
        ]
    )
    for m in names
}
_MONTH_RE = "|".join(sorted(_MONTHS, key=len, reverse=True))
_DATE_PATTERNS = (
    re.compile(r"\b(?P<y>(?:19|20)\d{2})-(?P<m>\d{2})-(?P<d>\d{2})\b"),
    re.compile(rf"(?i)\b(?P<d>\d{{1,2}})\s+(?P<mon>{_MONTH_RE})\.?,?\s+(?P<y>(?:19|20)\d{{2}})\b"),
    re.compile(rf"(?i)\b(?P<mon>{_MONTH_RE})\.?\s+(?P<d>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<y>(?:19|20)\d{{2}})\b"),
)
_URL_LINE = re.compile(r"^(?:(?:url|link|source|canonical)\s*[:=]\s*)?(?P<url>https?://\S+)$", re.I)
_TITLE_SITE_SEP = re.compile(r"\s+[–—|-]\s+")


@dataclass(frozen=True)
class CleanDocument:
    """The article text with boilerplate removed, and its metadata."""

    text: str
    title: str
    date: str = ""  # ISO yyyy-mm-dd
    url: str = ""
    source: str = ""
    author: str = ""
    dropped_lines: int = 0
    meta: dict[str, str] = field(default_factory=dict)


def is_prose(line: str) -> bool:
    """A sentence-like line: several words ending in terminal punctuation, or simply long."""
    words = line.split()
    if len(line) >= 160 and len(words) >= 12:
        return True
    letters = sum(ch.isalpha() for ch in line)
    return len(words) >= 6 and line.rstrip().endswith(TERMINAL) and letters >= len(line) * 0.5


def is_promo(line: str) -> bool:
    """A promotion: a newsletter prompt or copyright line, or a short navigation/promo line."""
    return bool(_PROMO_SENTENCE.search(line)) or (not is_prose(line) and bool(_PROMO_LINE.search(line)))


def _headline_like(line: str) -> bool:
    words = line.split()
    if not 4 <= len(words) <= 30 or line.startswith(("(", "[", "!")) or line.rstrip().endswith("."):
        return False
    letters = sum(ch.isalpha() for ch in line)
    return letters >= len(line) * 0.6 and not is_promo(line) and not _SITE_ICON.match(line)


def parse_date(text: str) -> str:
    """The first date in `text` as yyyy-mm-dd, or "" when there is none."""
    for pattern in _DATE_PATTERNS:
        for m in pattern.finditer(text):
            groups = m.groupdict()
            month = int(groups["m"]) if groups.get("m") else _MONTHS[groups["mon"].lower()]
            day, year = int(groups["d"]), int(groups["y"])
            if 1 <= month <= 12 and 1 <= day <= 31:
                return f"{year:04d}-{month:02d}-{day:02d}"
    return ""


def clean_text(text: str, meta: dict[str, str] | None = None) -> CleanDocument:
    """Remove boilerplate from one article and extract title, date, url, source and author.

    `meta` holds what a structured extractor (HTML) already found; it wins over guesses.
    """
    meta = dict(meta or {})
    lines = [ln.strip() for ln in text.split("\n")]
    # Index of non-empty lines, and for each one whether a blank line separates it from the next.
    entries = [(i, ln) for i, ln in enumerate(lines) if ln]
    prose = [is_prose(ln) and not is_promo(ln) for _, ln in entries]
    keep = [False] * len(entries)
    for k, is_p in enumerate(prose):
        keep[k] = is_p

    first_prose = next((k for k, p in enumerate(prose) if p), len(entries))
    last_prose = max((k for k, p in enumerate(prose) if p), default=-1)

    # Metadata from the header (everything before the article starts) and from non-prose lines.
    source = meta.get("source", "")
    url = meta.get("url", "")
    date = meta.get("date", "")
    header = [ln for _, ln in entries[:first_prose]]
    for ln in header:
        if m := _SITE_ICON.match(ln):
            source = source or m["site"].strip()
        if m := _URL_LINE.match(ln):
            url = url or m["url"]
    if not date:
        for k, (_, ln) in enumerate(entries):
            if not prose[k] and (found := parse_date(ln)):
                date = found
                break

    # Headline: the headline-like line closest to the start of the article.
    title = meta.get("title", "")
    headline_k = None
    for k in range(first_prose - 1, -1, -1):
        ln = entries[k][1]
        if _headline_like(_strip_date_prefix(ln)) and not _NAME.match(ln):
            headline_k = k
            break
    if headline_k is not None:
        keep[headline_k] = True
        headline = _strip_date_prefix(entries[headline_k][1])
        parts = _TITLE_SITE_SEP.split(headline)
        if not title:
            title = parts[0] if len(parts) > 1 else headline
        # "Headline – Site Name" on the first line names the publisher.
        if len(parts) > 1 and not source:
            source = parts[-1]
    if not source:
        for ln in header:
            parts = _TITLE_SITE_SEP.split(_strip_date_prefix(ln))
            if len(parts) > 1 and _headline_like(parts[0]):
                source = parts[-1]
                break

    # Sub-headings and short sentences between two prose paragraphs belong to the article.
    for k in range(first_prose + 1, last_prose):
        if not keep[k] and not is_promo(entries[k][1]) and any(ch.isalpha() for ch in entries[k][1]):
            prev_kept = keep[k - 1] and prose[k - 1]
            next_prose = prose[k + 1] if k + 1 < len(entries) else False
            if prev_kept and next_prose:
                keep[k] = True

    # Bylines: "By Jane Doe", or "Author" / a name line followed by a bio starting with that name.
    author = meta.get("author", "")
    for k, (_, ln) in enumerate(entries):
        if prose[k]:
            continue
        if m := _BYLINE.match(ln):
            keep[k] = True
            author = author or m["name"]
        elif _NAME.match(ln) and k + 1 < len(entries) and prose[k + 1]:
            first_name = ln.split()[0]
            if entries[k + 1][1].split()[0] == first_name:
                keep[k] = True
                author = author or ln
                if k > 0 and entries[k - 1][1].rstrip(":").lower() in ("author", "written by", "by"):
                    keep[k - 1] = True

    kept = [ln for k, (_, ln) in enumerate(entries) if keep[k]]
    body = "\n\n".join(kept)
    if not title:
        title = _title_from_text(body)
    return CleanDocument(
        text=body,
        title=title,
        date=date,
        url=url,
        source=source,
        author=author,
        dropped_lines=len(entries) - len(kept),
        meta={k: v for k, v in meta.items() if k not in ("title", "date", "url", "source", "author")},
    )


def _strip_date_prefix(line: str) -> str:
    """'date 2019-09-02  Headline' -> 'Headline' (scrapers glue the date onto the title)."""
    return re.sub(r"^\s*date\s+\d{4}-\d{2}-\d{2}\s+", "", line, flags=re.I)


def _title_from_text(body: str, max_words: int = 12) -> str:
    """A title for a text without a headline: the start of its first sentence."""
    first = body.split("\n", 1)[0]
    words = first.split()
    if len(words) <= max_words:
        return first.rstrip(".")
    return " ".join(words[:max_words]) + "…"
