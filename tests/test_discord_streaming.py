"""Answers that stream into Discord: the real client and pipeline, a fake Discord, a server that streams.

The fake OpenAI-compatible server sends its reply one word at a time at a fixed rate; once, the
real gemma-3-270m writes it. What is asserted is what a channel member sees: a message early,
growing by edits no faster than Discord allows, then the grounded answer in its place, equal to
what `qabot ask --json` gives for the same reply. Timed targets live in `python -m benchmarks`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.discord_format import WRITING, render_answer
from bot.discord_stream import EDIT_INTERVAL_S
from rag.pipeline import QAPipeline
from tests.fakes.fake_discord import FakeDiscord
from tests.fakes.llm_servers import FakeOpenAI, Reply

from .test_discord_bot import Q_SIGNED, Recording, bot_settings, connected, has_buttons, llm_pipeline, run

pytestmark = pytest.mark.timeout(180)

WORD_DELAY_S = 0.15  # the fake server's rate: ~7 words a second, like a small model on two cores
QUOTE = "US Vice President Mike Pence and Polish Prime Minister Mateusz Morawiecki signed the deal in Warsaw"


def cited_reply(request) -> Reply:  # noqa: ANN001
    """A reply citing the excerpt about the signing (whatever number it got), plus one citation to nothing."""
    n = next(i for i in range(1, 9) if f'n="{i}"' in request.user_text
             and "Morawiecki" in request.user_text.split(f'n="{i}"')[1].split("</source")[0])
    text = (f'Mike Pence and Mateusz Morawiecki signed it in Warsaw, as the article reports: "{QUOTE}" [{n}]. '
            "Both governments called it a model for Europe [9].")
    return Reply.text(text, chunk_delay=WORD_DELAY_S)


def embeds_of(reply) -> list[dict[str, Any]]:  # noqa: ANN001
    return [e.to_dict() for e in reply.embeds]


def same_answer(a, b) -> bool:  # noqa: ANN001
    return (a.text, a.sources, a.notice, a.refused, a.backend) == (b.text, b.sources, b.notice, b.refused, b.backend)


@pytest.fixture
def streaming(pipeline: QAPipeline) -> Iterator[tuple[FakeOpenAI, Recording]]:
    """The fake streaming server, and the real pipeline answering through it (recorded)."""
    with FakeOpenAI() as server:
        yield server, Recording(llm_pipeline(pipeline, server.base_url, llm_timeout=30.0))


async def ask_by_mention(fake: FakeDiscord, question: str) -> tuple[int, dict[str, Any]]:
    asked = await fake.user_says(f"<@{fake.bot.id}> {question}", author=fake.add_user("alice"))
    thread = int(asked["id"])
    await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(thread)), timeout=60)
    return thread, asked


def test_a_streamed_answer_appears_early_grows_by_edits_then_is_the_grounded_answer(streaming: tuple[FakeOpenAI, Recording], tmp_path: Path) -> None:
    server, recording = streaming
    server.enqueue(cited_reply)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            thread, asked = await ask_by_mention(fake, Q_SIGNED)
            (message,) = fake.bot_messages(thread)  # the streamed message became the answer: no second one
            mid = int(message["id"])
            edits = fake.find("PATCH", rf"/channels/{thread}/messages/{mid}")
            # It appeared while the reply was still being written (a part of it, or the placeholder),
            # grew by edits, and was then replaced.
            assert fake.message_sent_at[mid] - fake.message_sent_at[int(asked["id"])] < 10
            posted = next(r for r in fake.requests if r.method == "POST" and r.path == f"/channels/{thread}/messages")
            assert posted.body["content"] == WRITING or "Europe" not in posted.body["content"]
            assert len(edits) >= 3, edits
            previews = [e.body["content"] for e in edits[:-1]]
            texts = [p.split(" ▍")[0] for p in previews if "▍" in p]  # unchecked text while it streams
            assert len(texts) >= 2 and all(b.startswith(a) and len(b) > len(a) for a, b in zip(texts, texts[1:])), previews
            gaps = [b.at - a.at for a, b in zip([posted, *edits], edits)]
            assert min(gaps) >= EDIT_INTERVAL_S - 0.05, gaps  # Discord: 5 edits per 5 s per channel

            # The final message is the grounded answer: citation [9] gone, quote verified, sources listed.
            (question, _, answer) = recording.asks[0]
            assert answer.backend == "openai:fake" and "[9]" not in answer.text and "[9]" in answer.notice
            (final,) = render_answer(answer)
            assert message["content"] == final.content and message["embeds"] == embeds_of(final)

    run(scenario(), timeout=90)

    # ask --json for the same reply gives the same answer the channel was shown (the same text, served at
    # once: how fast it arrives changes nothing that is checked).
    server.enqueue(lambda request: dataclasses.replace(cited_reply(request), chunk_delay=0.0))
    direct = recording.inner.ask(Q_SIGNED)
    assert same_answer(direct, recording.asks[0][2])


def test_a_streamed_reply_grounding_discards_ends_as_the_offline_answer_with_its_notice(streaming: tuple[FakeOpenAI, Recording], tmp_path: Path) -> None:
    server, recording = streaming
    server.enqueue(Reply.text("They met in a lovely garden and talked about the weather for a while.",
                              chunk_delay=WORD_DELAY_S))

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            thread, _ = await ask_by_mention(fake, Q_SIGNED)
            (message,) = fake.bot_messages(thread)
            shown = [r.body["content"] for r in fake.requests
                     if r.path.startswith(f"/channels/{thread}/messages") and isinstance(r.body, dict)]
            assert any("lovely garden" in text for text in shown[:-1])  # it was visible while streaming
            answer = recording.asks[0][2]
            assert answer.backend.startswith("extractive (fallback") and "nothing it said is supported by the articles" in answer.notice
            assert message["content"] == render_answer(answer)[0].content
            assert message["content"].startswith("⚠️ *The openai:fake model did not give a usable answer")
            assert "garden" not in message["content"] and "Pence" in message["content"]

    run(scenario(), timeout=90)


def test_a_slash_command_answer_streams_into_its_deferred_response(streaming: tuple[FakeOpenAI, Recording], tmp_path: Path) -> None:
    server, recording = streaming
    server.enqueue(cited_reply)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            inter = await fake.slash("ask", user=fake.add_user("bob"), question=Q_SIGNED)
            await fake.wait_until(lambda: inter.original_id and has_buttons(fake.messages[inter.original_id]), 60)
            edits = fake.find("PATCH", rf"/webhooks/\d+/{inter.token}/messages/@original")
            assert len(edits) >= 2 and all(e.body["content"].startswith("**Q:** ") for e in edits)
            assert any("▍" in e.body["content"] for e in edits[:-1])
            gaps = [b.at - a.at for a, b in zip(edits, edits[1:])]
            assert min(gaps) >= EDIT_INTERVAL_S - 0.05, gaps
            (final,) = render_answer(recording.asks[0][2], question=Q_SIGNED)
            assert fake.messages[inter.original_id]["content"] == final.content
            assert inter.followups == []  # one message: the response itself

    run(scenario(), timeout=90)


def test_the_real_model_streams_into_discord(llamacpp_pipeline: QAPipeline, tmp_path: Path) -> None:
    recording = Recording(llamacpp_pipeline)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            thread, asked = await ask_by_mention(fake, Q_SIGNED)
            (message,) = fake.bot_messages(thread)
            writes = [r for r in fake.requests if r.path.startswith(f"/channels/{thread}/messages")
                      and r.method in ("POST", "PATCH")]
            assert len(writes) >= 2  # shown before the final answer replaced it
            assert "✍️" in writes[0].body["content"] and "✍️" not in message["content"]
            assert message["content"] == render_answer(recording.asks[0][2])[0].content

    run(scenario(), timeout=150)
