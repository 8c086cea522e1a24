"""Article text and metadata from Markdown, through markdown-it-py (a CommonMark parser).

Read as plain text, a Markdown article keeps its marks: `**bold**` shows up in quotes, a
`# Heading` becomes the title with its `#`, and a heading glued to the next paragraph reads
as a sentence. The parser knows the structure instead: every block (paragraph, heading, list
item, quote, table row) becomes one plain line, inline marks and link targets are dropped, and
the article's title (YAML front matter's `title`, else its first level-1 heading) goes to the
metadata and out of the body, where it would only be quoted back as a fake sentence.

What this returns is the document's text from then on: the cleaner, the chunker and the quote
check all work on it, so offsets and quotes are exact against what the index stores.
"""

from __future__ import annotations

import re
from typing import Any

from .clean import parse_date

#: YAML front matter: a block between two `---` lines at the very start of the file.
_FRONT_MATTER = re.compile(r"\A---[ \t]*\n(?P<yaml>.*?\n)(?:---|\.\.\.)[ \t]*(?:\n|\Z)", re.S)
_META_KEYS = {"title": "title", "date": "date", "url": "url", "link": "url", "canonical_url": "url",
              "author": "author", "authors": "author", "source": "source", "publisher": "source", "site": "source"}


def render_markdown(text: str) -> tuple[str, dict[str, str]]:
    """Return the plain text of a Markdown article (one block per paragraph) and its metadata."""
    from markdown_it import MarkdownIt

    meta, text = _front_matter(text)
    parser = MarkdownIt("commonmark").enable(["table", "strikethrough"])
    tokens = parser.parse(text)
    blocks: list[str] = []
    title_taken = False  # the heading that is the title has been kept out of the body
    row: list[str] = []  # the cells of the table row being read
    heading = ""
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open":
            heading = tok.tag
        elif tok.type == "heading_close":
            heading = ""
        elif tok.type == "inline":
            content = _inline_text(tok.children or [])
            if tokens[i - 1].type in ("th_open", "td_open"):
                row.append(content)
            elif heading == "h1" and not title_taken and meta.get("title", content) == content:
                meta["title"], title_taken = content, True
            elif content:
                blocks.append(content)
        elif tok.type == "tr_close":
            if any(row):
                blocks.append("; ".join(cell for cell in row if cell))
            row = []
        elif tok.type in ("fence", "code_block"):
            blocks.extend(ln.strip() for ln in tok.content.splitlines() if ln.strip())
        # html_block, html_inline, hr, images: not article prose (and HTML comments hide injections)
    return "\n\n".join(blocks), meta


def _inline_text(children: list[Any]) -> str:
    """The words of one inline run: marks, link targets, images and inline HTML dropped."""
    out: list[str] = []
    for child in children:
        if child.type in ("text", "code_inline"):
            out.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            out.append(" ")
        # an image's alt text describes a picture, not the article; inline HTML is not text
    return " ".join("".join(out).split())


def _front_matter(text: str) -> tuple[dict[str, str], str]:
    """Metadata from YAML front matter (title, date, url, author, source) and the text after it."""
    match = _FRONT_MATTER.match(text)
    if match is None:
        return {}, text
    import yaml

    try:
        data = yaml.safe_load(match["yaml"])
    except yaml.YAMLError:
        return {}, text  # not front matter after all: leave the text as it is
    if not isinstance(data, dict):
        return {}, text
    meta: dict[str, str] = {}
    for key, value in data.items():
        name = _META_KEYS.get(str(key).lower())
        if name is None or name in meta or value is None:
            continue
        if isinstance(value, list):
            value = ", ".join(str(v) for v in value)
        meta[name] = parse_date(str(value)) if name == "date" else str(value).strip()
    return {k: v for k, v in meta.items() if v}, text[match.end():]
