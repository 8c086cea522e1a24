"""Article text and metadata from HTML, through trafilatura (a maintained boilerplate remover)."""

from __future__ import annotations

import logging
import warnings


def extract_html(html: str) -> tuple[str, dict[str, str]]:
    """Return the main text of an HTML page (paragraphs on their own lines) and its metadata.

    HTML comments, scripts and navigation never reach the text. When trafilatura finds no
    article, the visible text of the page is used instead so that nothing is silently lost.
    """
    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        doc = trafilatura.bare_extraction(
            html, with_metadata=True, favor_recall=True, include_comments=False, include_tables=True
        )
    if doc is None or not (doc.text or "").strip():
        import lxml.html

        try:
            tree = lxml.html.fromstring(html)
        except (ValueError, lxml.etree.ParserError):
            return "", {}
        for bad in tree.xpath("//script|//style|//noscript|//template"):
            bad.drop_tree()
        return "\n".join(t.strip() for t in tree.itertext() if t.strip()), {}
    meta = {
        "title": doc.title or "",
        "date": (doc.date or "")[:10],
        "url": doc.url or "",
        "source": doc.sitename or "",
        "author": doc.author or "",
    }
    # Paragraphs come one per line; the cleaner expects blank lines between blocks.
    text = "\n\n".join(line for line in doc.text.split("\n"))
    return text, {k: v for k, v in meta.items() if v}
