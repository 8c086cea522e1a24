"""Render answers for Discord: pure functions, no network, no client.

Discord rejects a message over 2,000 characters and embeds over their limits (400, code
50035), so everything here is measured before it is sent. Long text is split at the best
boundary that does not cut a quotation, a [n] citation, a link or inline code; a code fence
that must be cut is closed and reopened so every piece renders on its own.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from rag.answer.grounding import preview
from rag.types import Answer, Source

MESSAGE_LIMIT = 2000
EMBED_TITLE_LIMIT = 256
EMBED_DESCRIPTION_LIMIT = 4096
FIELD_NAME_LIMIT = 256
FIELD_VALUE_LIMIT = 1024
FIELDS_PER_EMBED = 25
EMBED_TOTAL_LIMIT = 6000  # summed over all embeds of one message
EMBEDS_PER_MESSAGE = 10
THREAD_NAME_LIMIT = 100

SOURCES_COLOUR = 0x4F7CAC
_FENCE_CLOSE = "\n```"


@dataclass(frozen=True)
class Reply:
    """One Discord message: text and embeds, each within Discord's limits."""

    content: str
    embeds: tuple[discord.Embed, ...] = ()


# ------------------------------------------------------------------------------- LLM output
_IMAGE = re.compile(r"!\[([^\]\n]*)\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_LINK = re.compile(r"\[([^\]\n]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_BARE_URL = re.compile(r"<?(https?://[^\s<>()\[\]]+)>?")


def clean_llm_text(text: str, allowed_urls: Iterable[str] = ()) -> str:
    """Strip markdown images, and links whose target is not one of the answer's sources.

    An LLM can be steered by text inside an article into emitting an image (which Discord
    fetches and shows) or a phishing link; only URLs of the cited sources survive.
    """
    allowed = {u.rstrip("/") for u in allowed_urls if u}

    def is_allowed(url: str) -> bool:
        return url.rstrip("/") in allowed

    text = _IMAGE.sub(lambda m: m.group(1), text)
    text = _LINK.sub(lambda m: m.group(0) if is_allowed(m.group(2)) else m.group(1), text)

    def bare(m: re.Match[str]) -> str:
        url = m.group(1).rstrip(".,;:!?'\"")
        tail = m.group(1)[len(url):]
        if is_allowed(url):
            return m.group(0)
        return "(link removed)" + tail

    # Bare URLs outside markdown links (the links kept above are skipped).
    out: list[str] = []
    pos = 0
    for m in _LINK.finditer(text):
        out.append(_BARE_URL.sub(bare, text[pos:m.start()]))
        out.append(m.group(0))
        pos = m.end()
    out.append(_BARE_URL.sub(bare, text[pos:]))
    return "".join(out)


# ------------------------------------------------------------------------------ splitting
_CITATIONS = r"(?:\[\d+(?:\s*[,–-]\s*\d+)*\])+"
_PROTECTED = re.compile(
    "|".join(
        (
            r"“[^“”]{0,1500}”",  # curly quotation
            r"\"[^\"\n]{1,1500}\"",  # straight quotation on one line
            r"\S[ \t]*" + _CITATIONS,  # a citation stays with the word it follows
            r"`[^`\n]+`",  # inline code
            r"\[[^\]\n]*\]\([^)\s]*\)",  # markdown link
            r"<[^>\s]+>",  # <url>, <@mention>, <#channel>
            r"\*\*[^*\n]{1,300}\*\*",  # bold span
        )
    )
)
_FENCE_LINE = re.compile(r"^ {0,3}```([\w+#.-]{0,20}).*$", re.MULTILINE)


def _scan(text: str) -> tuple[bytearray, list[tuple[int, int, str]]]:
    """Positions where a cut would break something, and the code fence intervals.

    `unsafe[i]` is 1 when cutting just before character i would split a protected span.
    A fence interval (start, end, lang) covers the code between an opening and a closing
    fence line; `end` is len(text) for a fence left open.
    """
    unsafe = bytearray(len(text) + 1)
    for m in _PROTECTED.finditer(text):
        unsafe[m.start() + 1 : m.end()] = b"\x01" * (m.end() - m.start() - 1)
    fences: list[tuple[int, int, str]] = []
    open_at: int | None = None
    lang = ""
    for m in _FENCE_LINE.finditer(text):
        # Fence lines are never cut, nor the spots that would leave an empty code block behind:
        # right after an opening fence line, and just before a closing one.
        line_end = m.end()
        unsafe[m.start() + 1 : line_end] = b"\x01" * (line_end - m.start() - 1)
        if open_at is None:
            unsafe[line_end : min(line_end + 2, len(text) + 1)] = b"\x01" * (min(line_end + 2, len(text) + 1) - line_end)
            open_at, lang = min(line_end + 1, len(text)), m.group(1)
        else:
            unsafe[m.start()] = 1
            fences.append((open_at, m.start(), lang))
            open_at = None
    if open_at is not None:
        fences.append((open_at, len(text), lang))
    return unsafe, fences


def _fence_at(pos: int, fences: Sequence[tuple[int, int, str]]) -> str | None:
    for start, end, lang in fences:
        if start <= pos <= end and start < end:
            return lang
        if start > pos:
            break
    return None


_BOUNDARIES = (  # group 1 starts where the piece ends; the share is how far into the window it must be
    (re.compile(r"(\n)[ \t]*\n"), 0.5),  # paragraph
    (re.compile(r"(\n)"), 0.5),  # line
    (re.compile(r"[.!?…][\"'”’)\]]*(\s)"), 0.3),  # sentence
    (re.compile(r"(\s)"), 0.0),  # word
)


def _best_cut(text: str, start: int, hi: int, unsafe: bytearray) -> int:
    """The end of the next piece: the latest good boundary in text[start:hi]."""
    window = text[start:hi]
    for pattern, min_share in _BOUNDARIES:
        lowest = start + int((hi - start) * min_share)
        best = -1
        for m in pattern.finditer(window):
            cut = start + m.start(1)
            if cut > start and cut >= lowest and not unsafe[cut]:
                best = cut
        if best > start:
            return best
    for cut in range(hi, start, -1):  # no boundary at all: any safe spot, else a hard cut
        if not unsafe[cut]:
            return cut
    return hi


def split_message(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split text into pieces of at most `limit` characters that each render correctly."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    if limit < 100:
        raise ValueError("limit too small to split markdown safely")
    unsafe, fences = _scan(text)
    pieces: list[str] = []
    start, prefix = 0, ""
    while start < len(text):
        open_at_end = _fence_at(len(text), fences) is not None
        tail = text[start:]
        if len(prefix) + len(tail) + (len(_FENCE_CLOSE) if open_at_end else 0) <= limit:
            pieces.append(prefix + tail + (_FENCE_CLOSE if open_at_end else ""))
            break
        hi = start + limit - len(prefix) - len(_FENCE_CLOSE)
        end = _best_cut(text, start, hi, unsafe)
        lang = _fence_at(end, fences)
        chunk = text[start:end]
        chunk = chunk.rstrip("\n") if lang is not None else chunk.rstrip()
        piece = prefix + chunk + (_FENCE_CLOSE if lang is not None else "")
        if chunk.strip():
            pieces.append(piece)
        start = end
        if lang is not None:
            while start < len(text) and text[start] == "\n":
                start += 1
            prefix = f"```{lang}\n"
        else:
            while start < len(text) and text[start].isspace():
                start += 1
            # A cut inside a long "> " quote line keeps the quote marker on the next piece.
            line_start = text.rfind("\n", 0, end) + 1
            prefix = "> " if text.startswith("> ", line_start) and text[end - 1] != "\n" and "\n" not in text[end:start] else ""
    return pieces


# -------------------------------------------------------------------------------- sources
def _truncate(text: str, limit: int) -> str:
    """Shorten at a word boundary, marking the cut with an ellipsis."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def _quote_block(text: str) -> str:
    return "\n".join("> " + line if line.strip() else ">" for line in text.splitlines())


def source_field(source: Source, *, quote_shown: bool = False) -> tuple[str, str]:
    """The embed field (name, value) for one source: title, date, where it is, and the quote unless the
    answer's text shows it already (`quote_shown`): each quote appears once."""
    name = _truncate(f"[{source.n}] {source.title or source.doc_id}".strip(), FIELD_NAME_LIMIT)
    where = source.url if source.url else f"`{source.doc_id}`"
    if source.url and source.doc_id:
        where = f"{source.url} · `{source.doc_id}`"
    meta = " · ".join(part for part in (source.date, where) if part)
    meta = _truncate(meta, 400)
    room = FIELD_VALUE_LIMIT - len(meta) - 40
    quote = discord.utils.escape_markdown(" ".join(source.quote.split()))
    if quote_shown and source.verified:
        return name, meta[:FIELD_VALUE_LIMIT]
    if not quote:
        body = "*(no quote could be verified in this source)*"
    elif source.verified:
        body = _quote_block(_truncate(f"“{quote}”", room))
    else:
        body = "⚠️ *unverified quote — not found in the article:*\n" + _quote_block(_truncate(f"“{quote}”", room))
    return name, f"{meta}\n{body}"[:FIELD_VALUE_LIMIT]


def source_embeds(sources: Sequence[Source], shown: Callable[[Source], bool] = lambda s: False) -> list[discord.Embed]:
    """Sources as embeds, each under 25 fields and 6,000 characters; `shown(source)`: its quote is in the text."""
    embeds: list[discord.Embed] = []
    current: discord.Embed | None = None
    for source in sources:
        name, value = source_field(source, quote_shown=shown(source))
        if (
            current is None
            or len(current.fields) >= FIELDS_PER_EMBED
            or len(current) + len(name) + len(value) > EMBED_TOTAL_LIMIT
        ):
            title = "Sources" if not embeds else "Sources (continued)"
            current = discord.Embed(title=title, colour=SOURCES_COLOUR)
            embeds.append(current)
        current.add_field(name=name, value=value, inline=False)
    return embeds


def _pack_embeds(embeds: Sequence[discord.Embed]) -> list[list[discord.Embed]]:
    """Group embeds into messages: at most 10 and 6,000 characters per message."""
    groups: list[list[discord.Embed]] = []
    size = 0
    for embed in embeds:
        if not groups or len(groups[-1]) >= EMBEDS_PER_MESSAGE or size + len(embed) > EMBED_TOTAL_LIMIT:
            groups.append([])
            size = 0
        groups[-1].append(embed)
        size += len(embed)
    return groups


# --------------------------------------------------------------------------------- answers
def one_line(text: str, limit: int) -> str:
    return _truncate(" ".join(text.split()), limit)


def render_answer(answer: Answer, *, question: str | None = None, limit: int = MESSAGE_LIMIT) -> list[Reply]:
    """The messages for one answer: notice, text with [n] citations, then the sources.

    `question` is repeated on top when the asker's message is not visible next to the
    answer (slash commands show only the command name).
    """
    body = clean_llm_text(answer.text, (s.url for s in answer.sources)).strip()
    parts = []
    if question:
        parts.append(question_line(question))
    if answer.notice:
        parts.append(f"⚠️ *{one_line(answer.notice, 500)}*")
    parts.append(body or "*(empty answer)*")
    texts = split_message("\n\n".join(parts), limit)
    groups = _pack_embeds(source_embeds(answer.sources, answer.shows_quote))
    replies = [Reply(content=t) for t in texts]
    if groups:
        replies[-1] = Reply(content=replies[-1].content, embeds=tuple(groups[0]))
        replies.extend(Reply(content="", embeds=tuple(g)) for g in groups[1:])
    return replies


WRITING = "✍️ *writing the answer…*"
#: Room left under the message limit for the cursor and the "writing" line.
PREVIEW_LIMIT = MESSAGE_LIMIT - 100


def question_line(question: str) -> str:
    """The question repeated above an answer whose asker's message is not next to it (slash commands)."""
    return f"**Q:** {discord.utils.escape_markdown(one_line(question, 300))}"


def render_preview(partial: str, header: str = "") -> str:
    """An answer still being written: the text so far (not yet checked) and a note that it is."""
    top = f"{header}\n\n" if header else ""
    text = clean_llm_text(preview(partial)).strip()
    if not text:
        return top + WRITING
    return f"{top}{_truncate(text, PREVIEW_LIMIT - len(top))} ▍\n-# {WRITING} Sources and quotes are checked when it is done."


def thread_name(question: str) -> str:
    """A thread title from the question (Discord allows 1–100 characters)."""
    name = one_line(re.sub(r"<[@#][!&]?\d+>", "", question), THREAD_NAME_LIMIT)
    return name or "qabot answer"


def render_documents(docs: Sequence[Any], limit: int = MESSAGE_LIMIT) -> str:
    """One message listing indexed documents (title, date), cut short with a count if needed."""
    if not docs:
        return "No documents are indexed yet. Ask an admin to run `/reindex` or `qabot ingest`."
    header = f"**{len(docs)} indexed document{'s' if len(docs) != 1 else ''}:**"
    lines = [header]
    size = len(header)
    for i, doc in enumerate(sorted(docs, key=lambda d: (getattr(d, "date", "") or "", d.title or ""), reverse=True)):
        title = discord.utils.escape_markdown(one_line(doc.title or doc.doc_id, 120))
        date = getattr(doc, "date", "") or "undated"
        line = f"• {title} — {date}"
        more = f"… and {len(docs) - i} more"
        if size + len(line) + 1 + len(more) + 1 > limit:
            lines.append(more)
            break
        lines.append(line)
        size += len(line) + 1
    return "\n".join(lines)
