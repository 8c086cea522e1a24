"""The real discord.py client, with the real pipeline on the real corpus, against a fake Discord.

Only Discord is faked (tests/fakes/fake_discord.py, on 127.0.0.1); the LLM scenarios use
the fake OpenAI-compatible server from tests/fakes/llm_servers.py. Every wait is bounded:
`run()` caps each scenario, `fake.wait_until()` caps each condition, and the module has a
pytest timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import shutil
import statistics
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from pathlib import Path
from typing import Any

import discord
import pytest

from bot.discord_bot import QABot, VoteButton, bot_intents
from bot.discord_format import clean_llm_text
from bot.feedback import FeedbackStore
from rag.settings import Settings, load_settings
from rag.types import Answer, Turn
from tests.fakes.fake_discord import (
    EPHEMERAL,
    INTERACTION_WINDOW_S,
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILDS,
    INTENT_MESSAGE_CONTENT,
    FakeDiscord,
    FakeUser,
)
from tests.fakes.llm_servers import FakeOpenAI

from .conftest import free_port

pytestmark = pytest.mark.timeout(120)

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
POLAND_DOC = "000_320184e85fe372d2.txt"
Q_SIGNED = "Who signed the 5G agreement between the US and Poland?"
Q_WHERE = "Where was it signed?"  # refused on its own; answerable as a follow-up
QUESTIONS = [
    Q_SIGNED,
    "What did the Czech government decide about 5G security?",
    "Why is the US campaigning against Huawei in Europe?",
    "What did Germany decide about Huawei?",
    "Which summit in Prague was mentioned?",
]

LATENCIES_MS: list[float] = []  # one question at a time: question sent -> answer posted, as the fake saw it
BURST_MS: list[float] = []  # the same during the 20-question burst (includes waiting in the queue)


# ------------------------------------------------------------------------------- harness
def run(coro: Coroutine[Any, Any, Any], timeout: float = 45.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout))


class Recording:
    """The real pipeline, with a log of what the bot asked it (all work is done by the pipeline)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.asks: list[tuple[str, tuple[Turn, ...], Answer]] = []
        self.reindexes = 0

    def ask(self, question: str, history: Sequence[Turn] = (), *, on_token: Any = None) -> Answer:
        answer = self.inner.ask(question, history, on_token=on_token)
        self.asks.append((question, tuple(history), answer))
        return answer

    def documents(self) -> list[Any]:
        return self.inner.documents()

    def prepare_conversations(self) -> Any:
        return self.inner.prepare_conversations()

    def reindex(self) -> Any:
        self.reindexes += 1
        return self.inner.reindex()


def bot_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return load_settings(environ={}, corpus_dir=CORPUS, data_dir=tmp_path / "bot", **overrides)


@contextlib.asynccontextmanager
async def connected(fake: FakeDiscord, pipeline: Any, settings: Settings, bot_class: type[QABot] = QABot) -> AsyncIterator[QABot]:
    """A QABot logged in to the fake and past on_ready; closed and checked afterwards."""
    with fake.patch_client():
        bot = bot_class(
            pipeline=pipeline, settings=settings, feedback=FeedbackStore.from_settings(settings), guild_ready_timeout=0.05
        )
        runner = asyncio.create_task(bot.start(fake.token))
        ready = asyncio.create_task(bot.wait_until_ready())
        done, _ = await asyncio.wait({runner, ready}, timeout=15, return_when=asyncio.FIRST_COMPLETED)
        if ready not in done:
            ready.cancel()
            await bot.close()
            runner.result() if runner.done() else runner.cancel()
            raise TimeoutError("the bot never became ready")
        try:
            yield bot
            await fake.settle(quiet=0.15)
        finally:
            await asyncio.wait_for(bot.close(), 10)
            await asyncio.wait_for(runner, 10)
    assert fake.unknown == [], f"the bot used routes the fake does not know: {fake.unknown}"
    server_errors = [r for r in fake.requests if r.status >= 500]
    assert server_errors == []


def answer_messages(fake: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    """The bot's messages in a channel that belong to answers (not queue notices)."""
    return [m for m in fake.bot_messages(channel_id) if not m["content"].startswith("⏳")]


def has_buttons(message: dict[str, Any]) -> bool:
    return any(c.get("custom_id", "").startswith("qabot:vote:") for row in message["components"] for c in row["components"])


async def mention(fake: FakeDiscord, user: FakeUser, question: str, *, channel_id: int | None = None) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Ask by mention and wait for the complete answer in the thread opened from the question."""
    asked = await fake.user_says(f"<@{fake.bot.id}> {question}", author=user, channel_id=channel_id)
    thread_id = int(asked["id"])
    await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(thread_id)))
    replies = answer_messages(fake, thread_id)
    LATENCIES_MS.append((fake.message_sent_at[int(replies[-1]["id"])] - fake.message_sent_at[thread_id]) * 1000)
    return asked, replies


def pings_nobody(allowed: dict[str, Any] | None) -> bool:
    """`allowed_mentions` that lets nothing ping: no parse types, no ids, no reply ping."""
    return (
        allowed is not None
        and allowed.get("parse") == []
        and not allowed.get("users")
        and not allowed.get("roles")
        and not allowed.get("replied_user")
    )


def message_bodies(fake: FakeDiscord, channel_id: int) -> list[dict[str, Any]]:
    return [r.body for r in fake.find("POST", rf"/channels/{channel_id}/messages")]


@pytest.fixture(scope="module", autouse=True)
def report_latency() -> Iterator[None]:
    yield
    for label, values in (("one at a time", LATENCIES_MS), ("20 at once", BURST_MS)):
        if values:
            print(
                f"\nfake-Discord answer latency, {label}: {len(values)} answers, "
                f"median {statistics.median(values):.0f} ms, max {max(values):.0f} ms"
            )


@pytest.fixture(scope="module")
def own_pipeline(tmp_path_factory: pytest.TempPathFactory, built_data_dir: Path, embedder: Any) -> Any:
    """A pipeline on a private copy of the index, for /reindex (which writes)."""
    from rag.index import Index
    from rag.pipeline import QAPipeline

    data = tmp_path_factory.mktemp("reindex") / "data"
    shutil.copytree(built_data_dir, data)
    settings = load_settings(environ={}, corpus_dir=CORPUS, data_dir=data)
    return QAPipeline.from_settings(settings, index=Index.from_settings(settings, embedder=embedder), sync=False)


@pytest.fixture(scope="module")
def llm_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def llm_pipeline(pipeline: Any, base_url: str, **overrides: Any) -> Any:
    """The real pipeline with the OpenAI-compatible answerer, sharing the built index."""
    from rag.pipeline import QAPipeline

    settings = pipeline.settings.replace(
        **{"answerer": "openai", "llm_base_url": base_url, "openai_api_key": "test", "llm_model": "fake",
           "llm_timeout": 5.0, **overrides}
    )
    return QAPipeline.from_settings(settings, index=pipeline.index, sync=False)


# ----------------------------------------------------------------------------- scenarios
def test_a_mention_gets_a_threaded_reply_with_sources_and_no_pings(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)):
            alice = fake.add_user("alice")
            asked, replies = await mention(fake, alice, Q_SIGNED)
            thread_id = int(asked["id"])

            thread = fake.channels[thread_id]
            assert thread["type"] == 11 and thread["parent_id"] == str(fake.general_id)
            assert thread["name"] == Q_SIGNED and thread["owner_id"] == str(fake.bot.id)
            typing = fake.find("POST", rf"/channels/{thread_id}/typing")
            posts = fake.find("POST", rf"/channels/{thread_id}/messages")
            assert typing and fake.requests.index(typing[0]) < fake.requests.index(posts[0])

            assert len(replies) == 1, "one answer, sent once"
            reply = replies[0]
            expected = pipeline.ask(Q_SIGNED)
            assert not expected.refused
            assert "Pence" in reply["content"] and "[1]" in reply["content"]
            (embed,) = reply["embeds"]
            assert embed["title"] == "Sources"
            assert len(embed["fields"]) == len(expected.sources)
            for source, fld in zip(expected.sources, embed["fields"]):
                assert fld["name"].startswith(f"[{source.n}] {source.title[:40]}")
                assert f"`{source.doc_id}`" in fld["value"]
                assert (source.date or "") in fld["value"]
                # each quote once: in the answer text (its span in bold), or under its source when the text lacks it
                quote = discord.utils.escape_markdown(" ".join(source.quote.split()))[:60]
                assert (quote in fld["value"]) != expected.shows_quote(source)
            assert any(POLAND_DOC in f["value"] for f in embed["fields"])
            assert re.search(r"“[^”]*\*\*[^*]+\*\*[^”]*” \[1\]", reply["content"]), reply["content"]  # the span, bold

            for body in message_bodies(fake, thread_id):
                assert pings_nobody(body["allowed_mentions"])
            assert fake.pings[int(reply["id"])] == {"everyone": False, "users": [], "roles": []}
            ids = [c["custom_id"] for row in reply["components"] for c in row["components"]]
            assert [i.split(":")[2] for i in ids] == ["up", "down"]

            # The bot requested exactly the intents it needs (no DMs when they are off).
            assert fake.identifies[0]["intents"] == INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_MESSAGE_CONTENT
            # Its own answer came back through the gateway and was ignored: still one answer.
            await fake.settle(quiet=0.2)
            assert len(answer_messages(fake, thread_id)) == 1

    run(scenario())


def test_slash_ask_is_deferred_then_followed_up(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)):
            assert {c["name"] for c in fake.commands["global"]} == {"ask", "sources", "reindex"}
            alice = fake.add_user("alice")
            inter = await fake.slash("ask", user=alice, question=Q_SIGNED)
            await fake.wait_until(lambda: inter.followups and fake.threads())

            callback = fake.find("POST", rf"/interactions/{inter.id}/.+/callback")
            assert [r.body["type"] for r in callback] == [5], "deferred (type 5) once"
            assert callback[0].query == {"with_response": "1"}
            assert inter.callback_at is not None and inter.callback_at - inter.dispatched_at < 1.0
            followup = fake.find("POST", rf"/webhooks/{fake.app_id}/{inter.token}")
            assert followup and fake.requests.index(callback[0]) < fake.requests.index(followup[0])

            answer = fake.messages[inter.followups[0]]
            assert answer["content"].startswith(f"**Q:** {Q_SIGNED}")
            assert "Pence" in answer["content"] and answer["embeds"] and has_buttons(answer)
            assert pings_nobody(followup[0].body["allowed_mentions"])
            # The answer opened a thread for follow-ups, like a mention does.
            (thread,) = fake.threads()
            assert thread["id"] == answer["id"] and thread["name"] == Q_SIGNED

    run(scenario())


def test_a_follow_up_in_the_thread_uses_its_history(pipeline: Any, tmp_path: Path) -> None:
    recording = Recording(pipeline)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            alice = fake.add_user("alice")
            asked, first = await mention(fake, alice, Q_SIGNED)
            thread_id = int(asked["id"])
            follow = await fake.user_says(Q_WHERE, author=alice, channel_id=thread_id)  # no mention needed
            await fake.wait_until(lambda: sum(has_buttons(m) for m in fake.bot_messages(thread_id)) == 2)

            question, history, answer = recording.asks[1]
            assert question == Q_WHERE
            assert history == (Turn(question=Q_SIGNED, answer=recording.asks[0][2].text),)
            assert not answer.refused and "Warsaw" in answer.text
            second = answer_messages(fake, thread_id)[-1]
            assert "Warsaw" in second["content"]
            assert second["message_reference"]["message_id"] == follow["id"]
            # The answer is about the thread's signing: the history recorded above reached the pipeline.
            # (The same words alone now also find Poland's article, the only signing in a named city, so
            # asking them alone no longer shows the difference.)
            assert answer.sources[0].doc_id == POLAND_DOC

    run(scenario())


def test_a_chain_of_follow_ups_in_a_thread_keeps_the_topic(pipeline: Any, tmp_path: Path) -> None:
    recording = Recording(pipeline)
    first_q, when_q, who_q = (
        "What did the Czech cybersecurity agency warn against?",
        "When?",
        "Who then ordered government offices to stop using them?",
    )

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            alice, bob = fake.add_user("alice"), fake.add_user("bob")
            asked, _ = await mention(fake, alice, first_q)
            thread_id = int(asked["id"])
            for n, (user, q) in enumerate(((bob, when_q), (alice, who_q)), start=2):
                await fake.user_says(q, author=user, channel_id=thread_id)
                await fake.wait_until(lambda n=n: sum(has_buttons(m) for m in fake.bot_messages(thread_id)) == n)

            # The whole thread, in order, whoever asked: the third question sees both earlier turns.
            (_, _, first), (_, _, when), (question, history, who) = recording.asks
            assert question == who_q
            assert history == (Turn(first_q, first.text), Turn(when_q, when.text))
            assert "October 2019" in when.text and "Babiš" in who.text
            posted = answer_messages(fake, thread_id)
            assert "October 2019" in posted[1]["content"] and "Babiš" in posted[2]["content"]

    run(scenario())


def test_a_reply_to_an_answer_continues_its_conversation(pipeline: Any, tmp_path: Path) -> None:
    recording = Recording(pipeline)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            alice = fake.add_user("alice")
            inter = await fake.slash("ask", user=alice, question=Q_SIGNED)
            await fake.wait_until(lambda: inter.followups and fake.threads())
            answer = fake.messages[inter.followups[0]]  # posted in #general
            await fake.settle(quiet=0.15)
            reply = await fake.user_says(Q_WHERE, author=alice, reply_to=answer)
            await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(int(reply["id"]))))
            _, history, second = recording.asks[1]
            assert [t.question for t in history] == [Q_SIGNED]
            assert not second.refused and "Warsaw" in second.text

    run(scenario())


def test_the_rate_limit_triggers_with_a_polite_reply(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        settings = bot_settings(tmp_path, rate_limit=2)
        async with FakeDiscord() as fake, connected(fake, pipeline, settings):
            alice, bob = fake.add_user("alice"), fake.add_user("bob")
            await mention(fake, alice, QUESTIONS[0])
            await mention(fake, alice, QUESTIONS[1])
            third = await fake.user_says(f"<@{fake.bot.id}> {QUESTIONS[2]}", author=alice)
            await fake.wait_until(lambda: fake.bot_messages(fake.general_id))
            (polite,) = fake.bot_messages(fake.general_id)
            assert "asking quickly" in polite["content"] and "2 questions per person per minute" in polite["content"]
            assert polite["message_reference"]["message_id"] == third["id"]
            assert fake.pings[int(polite["id"])]["users"] == []
            assert int(third["id"]) not in fake.channels, "no thread for a refused question"

            # Told once: a fourth question in the same minute is ignored without another reply.
            await fake.user_says(f"<@{fake.bot.id}> {QUESTIONS[3]}", author=alice)
            # A slash command must always be answered: ephemerally.
            inter = await fake.slash("ask", user=alice, question=QUESTIONS[3])
            await fake.wait_until(lambda: inter.callback_type)
            assert inter.callback_type == 4 and inter.ephemeral
            assert "asking quickly" in fake.messages[inter.original_id]["content"]
            # Others are not affected.
            await mention(fake, bob, QUESTIONS[0])
            await fake.settle(quiet=0.2)
            visible = [m for m in fake.bot_messages(fake.general_id) if not m["flags"] & EPHEMERAL]
            assert visible == [polite]
            assert len(fake.threads()) == 3

    run(scenario())


def test_a_channel_not_on_the_allow_list_is_ignored(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake:
            settings = bot_settings(tmp_path, discord_channels=str(fake.general_id))
            async with connected(fake, pipeline, settings):
                alice = fake.add_user("alice")
                await fake.user_says(f"<@{fake.bot.id}> {Q_SIGNED}", author=alice, channel_id=fake.other_id)
                await fake.settle(quiet=0.3)
                touched = [r for r in fake.requests if str(fake.other_id) in r.path]
                assert touched == [] and fake.threads() == []
                inter = await fake.slash("ask", user=alice, channel_id=fake.other_id, question=Q_SIGNED)
                await fake.wait_until(lambda: inter.callback_type)
                assert inter.callback_type == 4 and inter.ephemeral
                assert f"<#{fake.general_id}>" in fake.messages[inter.original_id]["content"]
                await mention(fake, alice, Q_SIGNED)  # the allowed channel works

    run(scenario())


def test_reindex_is_refused_without_manage_server(own_pipeline: Any, tmp_path: Path) -> None:
    recording = Recording(own_pipeline)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            command = next(c for c in fake.commands["global"] if c["name"] == "reindex")
            assert command["default_member_permissions"] == str(1 << 5)  # hidden from non-managers
            assert command["contexts"] == [0]  # guild only
            alice = fake.add_user("alice")
            inter = await fake.slash("reindex", user=alice)
            await fake.wait_until(lambda: inter.callback_type)
            assert inter.callback_type == 4 and inter.ephemeral
            assert "Manage Server" in fake.messages[inter.original_id]["content"]
            assert recording.reindexes == 0

            admin = fake.add_user("admin", manage_guild=True)
            inter = await fake.slash("reindex", user=admin)
            await fake.wait_until(lambda: inter.followups)
            assert inter.callback_type == 5 and inter.ephemeral
            summary = fake.messages[inter.followups[0]]
            assert summary["flags"] & EPHEMERAL and "5 documents" in summary["content"]
            assert recording.reindexes == 1

    run(scenario())


def test_sources_lists_the_indexed_documents_with_commands_synced_to_one_guild(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake:
            settings = bot_settings(tmp_path, discord_guild_id=str(fake.guild_id))
            async with connected(fake, pipeline, settings):
                assert "global" not in fake.commands, "a test guild gets the commands instantly, nothing global"
                assert {c["name"] for c in fake.commands[str(fake.guild_id)]} == {"ask", "sources", "reindex"}
                inter = await fake.slash("sources", user=fake.add_user("alice"))
                await fake.wait_until(lambda: inter.followups)
                listing = fake.messages[inter.followups[0]]
                assert inter.ephemeral and listing["content"].startswith("**5 indexed documents:**")
                assert "US and Poland sign cooperation agreement on 5G networks" in listing["content"]
                assert "2019-09-02" in listing["content"]

    run(scenario())


def test_twenty_questions_at_once_are_each_answered_once(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path, max_concurrent=2)):
            users = [fake.add_user(f"user{i}") for i in range(20)]
            # Discord's rate limiter pushes back on one of the answers: it still arrives, once.
            fake.throttle("POST", r"/channels/\d+/messages", times=1, retry_after=0.1)
            mentions = [
                fake.user_says(f"<@{fake.bot.id}> {QUESTIONS[i % len(QUESTIONS)]}", author=u) for i, u in enumerate(users[:16])
            ]
            slashes = [fake.slash("ask", user=u, question=QUESTIONS[i % len(QUESTIONS)]) for i, u in enumerate(users[16:])]
            sent = await asyncio.gather(*mentions, *slashes)
            asked, interactions = sent[:16], sent[16:]
            ids = [int(m["id"]) for m in asked]

            def all_answered() -> bool:
                threads_done = all(any(has_buttons(m) for m in fake.bot_messages(i)) for i in ids)
                return threads_done and all(any(has_buttons(fake.messages[f]) for f in i.followups) for i in interactions)

            await fake.wait_until(all_answered, timeout=30)
            await fake.settle(quiet=0.3)
            for i in ids:
                answers = answer_messages(fake, i)
                assert len(answers) == 1, f"question {i} got {len(answers)} answers"
                BURST_MS.append((fake.message_sent_at[int(answers[0]["id"])] - fake.message_sent_at[i]) * 1000)
            for inter in interactions:
                assert inter.callback_type == 5 and inter.callback_at - inter.dispatched_at < INTERACTION_WINDOW_S  # type: ignore[operator]
                answers = [f for f in inter.followups if not fake.messages[f]["content"].startswith("⏳")]
                assert len(answers) == 1 and f"**Q:** {inter.options['question']}" in fake.messages[answers[0]]["content"]
            assert len(fake.threads()) == 20, "every channel answer opened its own thread"
            # With two answer slots, most waited in the queue and were told so; the notices are gone now.
            notices = [m for m in fake.messages.values() if m["content"].startswith("⏳")]
            assert notices and all(int(n["id"]) in fake.deleted for n in notices)
            assert [r.status for r in fake.requests if r.status >= 400] == [429]

    run(scenario(), timeout=60)



def test_a_feedback_click_is_stored(pipeline: Any, tmp_path: Path) -> None:
    settings = bot_settings(tmp_path)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, settings) as bot:
            alice, bob = fake.add_user("alice"), fake.add_user("bob")
            _, (reply,) = await mention(fake, alice, Q_SIGNED)
            up, down = [c["custom_id"] for c in reply["components"][0]["components"]]
            click = await fake.click(reply, down, user=bob)
            await fake.wait_until(lambda: click.callback_type)
            assert click.callback_type == 4 and click.ephemeral
            assert "recorded" in fake.messages[click.original_id]["content"]
            click = await fake.click(reply, up, user=bob)  # changing one's mind replaces the vote
            await fake.wait_until(lambda: click.callback_type)
            assert bot.feedback.user_hash(bob.id) != str(bob.id)
            return bot.feedback.user_hash(bob.id)

    bob_hash = run(scenario())
    (record,) = [json.loads(line) for line in FeedbackStore.from_settings(settings).export_jsonl()]
    assert record["vote"] == "up" and record["user"] == bob_hash
    assert record["question"] == Q_SIGNED and "Pence" in record["answer"]
    assert any(s["doc_id"] == POLAND_DOC for s in record["sources"])
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", record["time"])


def test_bots_and_unaddressed_messages_are_ignored(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)):
            other_bot = fake.add_user("otherbot", bot=True)
            await fake.user_says(f"<@{fake.bot.id}> {Q_SIGNED}", author=other_bot)
            await fake.user_says(f"@everyone {Q_SIGNED}", author=fake.add_user("alice"))  # @everyone is no mention
            dm_user = fake.add_user("carol")
            await fake.user_says(Q_SIGNED, author=dm_user, channel_id=fake.dm_channel(dm_user))  # DMs are off
            await fake.settle(quiet=0.3)
            assert fake.bot_messages() == [] and fake.threads() == []
            assert not fake.find("POST", r"/channels/\d+/typing")

    run(scenario())


def test_direct_messages_are_answered_when_enabled(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path, discord_dms=True)):
            assert fake.identifies[0]["intents"] & INTENT_DIRECT_MESSAGES
            carol = fake.add_user("carol")
            dm = fake.dm_channel(carol)
            question = await fake.user_says(Q_SIGNED, author=carol, channel_id=dm)
            await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(dm)))
            (answer,) = answer_messages(fake, dm)
            assert answer["message_reference"]["message_id"] == question["id"] and "Pence" in answer["content"]
            assert fake.threads() == []
            # The DM is the conversation: a follow-up there uses it.
            await fake.user_says(Q_WHERE, author=carol, channel_id=dm)
            await fake.wait_until(lambda: sum(has_buttons(m) for m in fake.bot_messages(dm)) == 2)
            assert "Warsaw" in answer_messages(fake, dm)[-1]["content"]

    run(scenario())


def test_too_long_and_empty_questions_are_refused_politely(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path, max_question_chars=100)):
            alice = fake.add_user("alice")
            long_q = await fake.user_says(f"<@{fake.bot.id}> " + "why " * 40, author=alice)
            await fake.wait_until(lambda: fake.bot_messages(fake.general_id))
            (polite,) = fake.bot_messages(fake.general_id)
            assert "keep it under 100" in polite["content"]
            assert polite["message_reference"]["message_id"] == long_q["id"] and fake.threads() == []
            # Punctuation only: the pipeline's own polite refusal (InvalidQuestionError) is shown.
            odd = await fake.user_says(f"<@{fake.bot.id}> ?!?", author=alice)
            await fake.wait_until(lambda: fake.bot_messages(int(odd["id"])))
            (said,) = fake.bot_messages(int(odd["id"]))
            assert said["content"] == "Please ask a question in words."

    run(scenario())


def test_an_internal_error_shows_an_apology_with_a_reference(pipeline: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Recording):
        """A pipeline whose store has gone away mid-flight."""

        def ask(self, question: str, history: Sequence[Turn] = (), *, on_token: Any = None) -> Answer:
            raise RuntimeError("chroma: database disk image is malformed")

    async def scenario() -> str:
        async with FakeDiscord() as fake, connected(fake, Broken(pipeline), bot_settings(tmp_path)):
            asked = await fake.user_says(f"<@{fake.bot.id}> {Q_SIGNED}", author=fake.add_user("alice"))
            await fake.wait_until(lambda: fake.bot_messages(int(asked["id"])))
            (said,) = fake.bot_messages(int(asked["id"]))
            return said["content"]

    with caplog.at_level(logging.ERROR, logger="qabot.discord"):
        said = run(scenario())
    ref = re.search(r"reference: `([0-9a-f]{8})`", said)
    assert said.startswith("Sorry, something went wrong") and ref
    assert "malformed" not in said, "details stay in the log"
    (record,) = [r for r in caplog.records if ref.group(1) in r.getMessage()]
    assert record.exc_info and "malformed" in record.getMessage()


def test_a_reconnect_resumes_and_replays_missed_events(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)):
            await fake.request_reconnect()
            asked = await fake.user_says(f"<@{fake.bot.id}> {Q_SIGNED}", author=fake.add_user("alice"))  # while away
            await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(int(asked["id"]))))
            assert len(fake.identifies) == 1 and len(fake.resumes) == 1 and fake.gateway_connects == 2

    run(scenario())


def test_the_fake_rejects_messages_discord_would_reject(pipeline: Any, tmp_path: Path) -> None:
    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)) as bot:
            channel = bot.get_channel(fake.general_id)
            assert isinstance(channel, discord.TextChannel)
            with pytest.raises(discord.HTTPException) as too_long:
                await channel.send("x" * 2001)
            assert too_long.value.status == 400 and too_long.value.code == 50035
            with pytest.raises(discord.HTTPException) as big_embed:
                await channel.send(embed=discord.Embed(description="y" * 4097))
            assert big_embed.value.code == 50035
            fake.requests.clear()  # the checks above are not the bot's doing

    run(scenario())


# ------------------------------------------------------------------------------ with an LLM
def long_llm_reply(code: bool = True) -> str:
    """About 5,000 characters with citations, a quotation and (`code`) a code fence, as an LLM might write.

    Through the LLM answerer, only the statements the articles support arrive (attribution leaves the code
    fence out); `code` is for answers made longer by hand, which the bot must split whatever they hold.
    """
    para = (
        "The United States and Poland signed a cooperation agreement on 5G networks in Warsaw [1]. "
        "US Vice President Mike Pence and Polish Prime Minister Mateusz Morawiecki signed the deal [1][2]. "
        "The agreement says protecting next generation networks \"is of vital importance\" [1]. "
    )
    fence = "```text\n" + "\n".join(f"step {i}: sign, verify, publish [{1 + i % 2}]" for i in range(30)) + "\n```"
    parts = [para * 2, para * 3, fence if code else para * 3, para * 4, para * 4, para]
    return "\n\n".join(parts)


def long_supported_reply(pipeline: Any) -> str:
    """Over 2,000 characters of distinct statements the articles support: the sentences of the US-Poland
    articles' chunks that Q_SIGNED retrieves, as indexed, in paragraphs, each cited. (A reply that repeats
    itself is shown once per statement, so repeating a paragraph no longer makes a long answer.)"""
    from rag.text import split_sentences

    sentences: list[str] = []
    for doc, chunks in ((POLAND_DOC, None), ("001_d1183fcb53e46cb8.txt", 1)):
        for chunk in pipeline.index.store.get_document(doc)[:chunks]:
            for a, b in split_sentences(chunk.text):
                sentence = chunk.text[a:b].strip()
                if len(sentence) >= 60 and sentence not in sentences:
                    sentences.append(sentence)
    cited = [f"{s.rstrip('.')} [1]." for s in sentences]
    reply = "\n\n".join(" ".join(cited[i:i + 3]) for i in range(0, len(cited), 3))
    assert len(reply) > 2200, len(reply)  # longer than one Discord message
    return reply


def assert_valid_pieces(fake: FakeDiscord, pieces: list[dict[str, Any]], answer: Answer) -> None:
    """Pieces Discord accepted, each rendering on its own, that together are the whole answer."""
    assert not [r for r in fake.requests if r.status >= 400], "Discord accepted every piece"
    for piece in pieces:
        assert len(piece["content"]) <= 2000
        assert piece["content"].count("```") % 2 == 0, "every piece closes its code fence"
        assert not re.search(r"\[\d*$|^\d*\]", piece["content"]), "no citation cut in two"
        assert piece["content"].count('"') % 2 == 0, "no quotation cut in two"
    last = [False] * (len(pieces) - 1) + [True]
    assert [bool(p["embeds"]) for p in pieces] == last, "sources under the last piece"
    assert [has_buttons(p) for p in pieces] == last, "vote buttons under the last piece"
    joined = "\n".join(p["content"] for p in pieces)
    notice = f"⚠️ *{answer.notice}*\n\n" if answer.notice else ""  # what qabot left out of an LLM reply, said first
    assert joined.startswith(notice)
    assert _words(joined[len(notice):].replace("```text", "").replace("```", "")) == _words(
        clean_llm_text(answer.text).replace("```text", "").replace("```", "")
    ), "nothing lost or reordered"


class Lengthened(Recording):
    """The real pipeline's answer and sources, with the text replaced by a 5,000-character one.

    No backend produces that today (the LLM answerer caps replies at 3,000 characters), but
    the bot must split whatever it gets; the real sources keep the embed realistic.
    """

    def ask(self, question: str, history: Sequence[Turn] = (), *, on_token: Any = None) -> Answer:
        answer = self.inner.ask(question, history)
        longer = Answer(answer.question, long_llm_reply(), answer.sources, backend=answer.backend)
        self.asks.append((question, tuple(history), longer))
        return longer


def test_a_5000_character_answer_arrives_in_valid_pieces(pipeline: Any, tmp_path: Path) -> None:
    lengthened = Lengthened(pipeline)
    assert 4800 <= len(long_llm_reply()) <= 5200

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, lengthened, bot_settings(tmp_path)):
            _, pieces = await mention(fake, fake.add_user("alice"), Q_SIGNED)
            answer = lengthened.asks[0][2]
            assert len(pieces) >= 3 and answer.sources
            assert_valid_pieces(fake, pieces, answer)

    run(scenario())


def test_a_long_llm_reply_is_split_into_valid_pieces(pipeline: Any, llm_server: FakeOpenAI, tmp_path: Path) -> None:
    recording = Recording(llm_pipeline(pipeline, llm_server.base_url))

    async def scenario() -> None:
        llm_server.clear_queue()
        llm_server.enqueue_text(long_supported_reply(pipeline))
        async with FakeDiscord() as fake, connected(fake, recording, bot_settings(tmp_path)):
            _, pieces = await mention(fake, fake.add_user("alice"), Q_SIGNED)
            answer = recording.asks[0][2]
            assert answer.backend == "openai:fake" and len(answer.text) > 2000
            assert len(pieces) >= 2
            assert_valid_pieces(fake, pieces, answer)

    run(scenario())


def _words(text: str) -> list[str]:
    return text.split()


def test_everyone_in_a_question_or_an_llm_reply_pings_nobody(pipeline: Any, llm_server: FakeOpenAI, tmp_path: Path) -> None:
    llm = llm_pipeline(pipeline, llm_server.base_url)

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, llm, bot_settings(tmp_path)):
            alice = fake.add_user("alice")
            llm_server.clear_queue()
            llm_server.enqueue_text(
                f"@everyone @here <@{alice.id}> Pence and Morawiecki signed the deal in Warsaw [1]."
            )
            _, (reply,) = await mention(fake, alice, f"@everyone {Q_SIGNED}")
            assert "@everyone" in reply["content"] and f"<@{alice.id}>" in reply["content"]
            # The question is echoed on top of a slash-command answer.
            llm_server.enqueue_text("@everyone Pence signed it [1].")
            inter = await fake.slash("ask", user=alice, question=f"@everyone @here <@{alice.id}> {Q_SIGNED}")
            # The deferred response is the answer, filled in by the first follow-up or by the streamed edits.
            await fake.wait_until(lambda: inter.original_id and has_buttons(fake.messages[inter.original_id]))
            echoed = fake.messages[inter.original_id]
            assert echoed["content"].startswith("**Q:** @everyone @here")

            bot_messages = fake.bot_messages()
            assert len(bot_messages) >= 2
            for message in bot_messages:
                assert fake.pings[int(message["id"])] == {"everyone": False, "users": [], "roles": []}
                assert message["mention_everyone"] is False and message["mentions"] == []
            sent = [r.body for r in fake.requests if r.method in ("POST", "PATCH") and isinstance(r.body, dict)
                    and ("content" in r.body or "data" in r.body)]
            for body in sent:
                allowed = (body.get("data") or body).get("allowed_mentions")
                assert pings_nobody(allowed), body

    run(scenario())


def test_an_llm_backend_that_is_down_yields_the_offline_answer_with_a_notice(pipeline: Any, tmp_path: Path) -> None:
    down = llm_pipeline(pipeline, f"http://127.0.0.1:{free_port()}/v1")

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, down, bot_settings(tmp_path)):
            started = time.monotonic()
            _, (reply,) = await mention(fake, fake.add_user("alice"), Q_SIGNED)
            assert time.monotonic() - started < 15
            first_line = reply["content"].splitlines()[0]
            assert first_line.startswith("⚠️ *The openai:fake model did not give a usable answer")
            assert "offline answer" in first_line
            assert "Pence" in reply["content"] and reply["embeds"] and has_buttons(reply)

    run(scenario())


def test_vote_button_custom_ids_fit_discord_limits() -> None:
    async def make() -> list[str]:
        view = discord.ui.View(timeout=None)
        view.add_item(VoteButton("down", "f" * 32))
        return [item.custom_id for item in view.children]  # type: ignore[attr-defined]

    (custom_id,) = run(make())
    assert len(custom_id) <= 100 and VoteButton.__discord_ui_compiled_template__.fullmatch(custom_id)
    assert bot_intents(load_settings(environ={})).value == INTENT_GUILDS | INTENT_GUILD_MESSAGES | INTENT_MESSAGE_CONTENT


def test_heartbeats_keep_flowing_while_a_slow_answer_is_computed(pipeline: Any, llm_server: FakeOpenAI, tmp_path: Path) -> None:
    """`pipeline.ask()` blocks for the whole LLM call; it must run off the event loop."""
    slow = llm_pipeline(pipeline, llm_server.base_url)

    async def scenario() -> None:
        llm_server.clear_queue()
        llm_server.enqueue_stall(1.2, then="Pence and Morawiecki signed the deal in Warsaw [1].")
        async with FakeDiscord(heartbeat_interval_ms=100) as fake, connected(fake, slow, bot_settings(tmp_path)):
            asked = await fake.user_says(f"<@{fake.bot.id}> {Q_SIGNED}", author=fake.add_user("alice"))
            await fake.wait_until(lambda: fake.find("POST", rf"/channels/{asked['id']}/typing"))
            before = fake.heartbeats
            await fake.wait_until(lambda: any(has_buttons(m) for m in fake.bot_messages(int(asked["id"]))))
            assert fake.heartbeats - before >= 6, "the gateway heartbeat kept its 100 ms rhythm during the answer"
            assert "Warsaw" in answer_messages(fake, int(asked["id"]))[0]["content"]

    run(scenario())


def test_autosharded_bot_asks_discord_for_shards_and_answers(pipeline: Any, tmp_path: Path) -> None:
    from bot.discord_bot import ShardedQABot

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path, discord_autoshard=True), ShardedQABot) as bot:
            assert isinstance(bot, discord.AutoShardedClient) and bot.shard_count == 1
            assert fake.find("GET", r"/gateway/bot")
            assert fake.identifies[0]["shard"] == [0, 1]
            _, replies = await mention(fake, fake.add_user("alice"), Q_SIGNED)
            assert "Pence" in replies[-1]["content"]

    run(scenario())
