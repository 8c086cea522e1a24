"""Rendering answers under Discord's limits, the rate limiter and the feedback store (no network)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import discord
from hypothesis import given, settings
from hypothesis import strategies as st

from bot.discord_format import (
    EMBED_TOTAL_LIMIT,
    MESSAGE_LIMIT,
    clean_llm_text,
    render_answer,
    render_documents,
    source_embeds,
    split_message,
    thread_name,
)
from bot.feedback import FeedbackStore
from bot.ratelimit import RateLimiter
from rag.types import Answer, Source, Turn

CITATION = re.compile(r"\[\d+\]")
WORDS = ["Pence", "Warsaw", "signed", "the", "agreement", "on", "5G", "networks", "Huawei", "security", "a" * 30]


@st.composite
def markdown_answers(draw: st.DrawFn) -> str:
    """LLM-like text: sentences with citations and quotations, code fences, long lines."""
    blocks = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["para", "para", "para", "code", "quote", "line"]))
        if kind == "code":
            lines = draw(st.lists(st.text(alphabet="abc xyz=()[]1", min_size=0, max_size=90), min_size=1, max_size=60))
            blocks.append("```python\n" + "\n".join(lines) + "\n```")
        elif kind == "quote":
            blocks.append("> " + " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=300))))
        elif kind == "line":
            blocks.append(" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=500))))
        else:
            sentences = []
            for _ in range(draw(st.integers(1, 12))):
                words = " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=30)))
                if draw(st.booleans()):
                    words += ' “' + " ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=80))) + "”"
                sentences.append(words + "".join(f" [{n}]" for n in draw(st.lists(st.integers(1, 12), max_size=2))) + ".")
            blocks.append(" ".join(sentences))
    return "\n\n".join(blocks)


def _content_words(text: str) -> list[str]:
    text = re.sub(r"```\w*", " ", text)
    return [w for w in text.split() if w != ">"]


@settings(max_examples=80, deadline=None)
@given(markdown_answers())
def test_split_pieces_fit_and_break_nothing(text: str) -> None:
    pieces = split_message(text)
    assert all(0 < len(p) <= MESSAGE_LIMIT for p in pieces)
    assert all(p.count("```") % 2 == 0 for p in pieces), "each piece closes the code fence it opens"
    assert _content_words("\n".join(pieces)) == _content_words(text), "nothing lost or reordered"
    assert sum(len(CITATION.findall(p)) for p in pieces) == len(CITATION.findall(text)), "no citation cut"
    for quote in re.findall(r"“[^”]*”", text):
        if len(quote) <= 1500:
            assert any(quote in p for p in pieces), "a quotation stays in one piece"


def test_a_short_answer_is_one_piece_and_an_empty_one_none() -> None:
    assert split_message("  Pence signed it [1].  ") == ["Pence signed it [1]."]
    assert split_message("   ") == []


def test_a_long_quoted_line_keeps_its_quote_marker() -> None:
    text = "> " + "word " * 900
    pieces = split_message(text)
    assert len(pieces) == 3 and all(p.startswith("> ") for p in pieces)


def _source(n: int, *, quote: str = "Pence signed the deal.", verified: bool = True, title: str = "Title", url: str = "") -> Source:
    return Source(n, f"{n:03d}_doc.txt", title, "2019-09-02", url, quote, 0.5, verified=verified)


def test_sources_show_title_date_file_or_url_and_the_verified_quote() -> None:
    (embed,) = source_embeds([_source(1), _source(2, verified=False), _source(3, quote=""), _source(4, url="https://example.org/a")])
    first, unverified, empty, with_url = (f.value for f in embed.fields)
    assert embed.fields[0].name == "[1] Title"
    assert first == "2019-09-02 · `001_doc.txt`\n> “Pence signed the deal.”"
    assert "unverified quote" in unverified
    assert "no quote could be verified" in empty
    assert "https://example.org/a" in with_url and "`004_doc.txt`" in with_url


def test_many_long_sources_stay_within_every_embed_limit() -> None:
    sources = [_source(n, quote="word " * 600, title="T" * 400) for n in range(1, 41)]
    answer = Answer("q", "Long answer [1]. " * 300, tuple(sources), notice="The LLM timed out; this is the offline answer.")
    replies = render_answer(answer)
    for reply in replies:
        assert len(reply.content) <= MESSAGE_LIMIT and len(reply.embeds) <= 10
        assert sum(len(e) for e in reply.embeds) <= EMBED_TOTAL_LIMIT
        for embed in reply.embeds:
            data = embed.to_dict()
            assert len(data.get("title", "")) <= 256 and len(data.get("fields", [])) <= 25
            assert all(len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in data["fields"])
    fields = [f for r in replies for e in r.embeds for f in e.fields]
    assert [f.name[:4] for f in fields] == [f"[{n}] "[:4] for n in range(1, 41)], "every source shown, in order"
    assert replies[0].content.startswith("⚠️ *The LLM timed out")


def test_render_escapes_the_echoed_question_and_strips_foreign_links() -> None:
    answer = Answer("q", "See ![x](https://evil.test/p.png) [here](https://evil.test) and [1](https://example.org/a).",
                    (_source(1, url="https://example.org/a"),))
    (reply,) = render_answer(answer, question="**bold** @everyone")
    assert reply.content.startswith("**Q:** \\*\\*bold\\*\\* @everyone")
    assert "evil.test" not in reply.content and "[1](https://example.org/a)" in reply.content


def test_clean_llm_text() -> None:
    cleaned = clean_llm_text("a ![img](http://x/i.png) b [t](http://bad) c http://bad/path. d https://ok.org/a", ["https://ok.org/a"])
    assert cleaned == "a img b t c (link removed). d https://ok.org/a"


def test_thread_names_fit() -> None:
    assert thread_name("<@123> " + "why " * 50).startswith("why why") and len(thread_name("x " * 100)) <= 100
    assert thread_name("<@123>") == "qabot answer"


def test_document_list_fits_one_message() -> None:
    class Doc:
        def __init__(self, i: int) -> None:
            self.doc_id, self.title, self.date = f"{i}.txt", f"Article number {i} " * 3, "2019-09-02"

    text = render_documents([Doc(i) for i in range(500)])
    assert len(text) <= MESSAGE_LIMIT and text.startswith("**500 indexed documents:**")
    assert re.search(r"… and \d+ more$", text)
    assert "No documents" in render_documents([])


def test_rate_limiter_window_and_single_warning() -> None:
    now = [0.0]
    limiter = RateLimiter(2, 60.0, clock=lambda: now[0])
    assert limiter.check("alice").allowed and limiter.check("alice").allowed
    refused = limiter.check("alice")
    assert not refused.allowed and refused.warn and 59 <= refused.retry_after <= 60
    assert not limiter.check("alice").warn, "told once per window"
    assert limiter.check("bob").allowed
    now[0] = 61.0
    assert limiter.check("alice").allowed
    assert RateLimiter(0).check("anyone").allowed, "0 turns the limit off"


def test_feedback_store_hashes_users_per_install_and_keeps_history(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "a" / FeedbackStore.FILENAME)
    again = FeedbackStore(tmp_path / "a" / FeedbackStore.FILENAME)
    other = FeedbackStore(tmp_path / "b" / FeedbackStore.FILENAME)
    user = 412345678901234567  # a Discord user id
    assert store.user_hash(user) == again.user_hash(user) != other.user_hash(user)
    assert str(user) not in store.user_hash(user) and re.fullmatch(r"[0-9a-f]{64}", store.user_hash(user))

    ids = [store.record_answer(Answer(f"q{i}", f"a{i}", (_source(1),)), channel_id=7) for i in range(8)]
    store.record_answer(Answer("elsewhere", "x"), channel_id=8)
    assert store.history(7, limit=3) == [Turn("q5", "a5"), Turn("q6", "a6"), Turn("q7", "a7")]
    assert store.history(7, limit=2, until_answer=ids[2]) == [Turn("q1", "a1"), Turn("q2", "a2")]
    store.link_messages(ids[0], [1001, 1002])
    assert store.answer_for_message(1002).question == "q0"  # type: ignore[union-attr]

    assert store.record_vote(ids[0], "down", user) and store.record_vote(ids[0], "up", user)
    assert not store.record_vote("0" * 32, "up", user)
    (line,) = list(store.export_jsonl())
    record = json.loads(line)
    assert record["vote"] == "up" and record["question"] == "q0" and record["user"] == store.user_hash(user)
    assert record["sources"][0]["doc_id"] == "001_doc.txt"


def test_embeds_use_discord_limits_as_discord_counts_them() -> None:
    embed = discord.Embed(title="t" * 10)
    embed.add_field(name="n" * 5, value="v" * 7)
    assert len(embed) == 22  # discord.py counts title, fields, footer, author like Discord does


def test_a_preview_of_a_streaming_reply_fits_one_message_and_shows_no_markup() -> None:
    from bot.discord_format import WRITING, question_line, render_preview

    header = question_line("why? " * 80)
    partial = ('<source-1a2b3c4d n="2" title="x">\nPence signed it ![p](https://evil.example/p.png) '
               "[see](https://evil.example/x) " + "word " * 1200 + "<|im_end|>\n<|im_start|>user\nmore")
    shown = render_preview(partial, header)
    assert len(shown) <= 2000 and shown.startswith(header)
    assert "evil.example" not in shown and "<source" not in shown and "im_start" not in shown and "more" not in shown
    assert "Pence signed it" in shown and "▍" in shown and WRITING in shown
    assert render_preview("<source-1a2b3c4d n='1'>") == WRITING  # nothing to show yet
