"""The Discord edge: turn mentions, replies, DMs and slash commands into `pipeline.ask()` calls.

No retrieval or answering happens here. The bot receives its collaborators (the pipeline,
the settings, the feedback store) in its constructor; `setup_hook` registers the slash
commands and the persistent 👍/👎 buttons and syncs the command tree.

`pipeline.ask()` is blocking and CPU-bound, so it runs in a small thread pool bounded by
`settings.max_concurrent`; the event loop keeps answering heartbeats meanwhile. An LLM's text
is shown as it is written (`discord_stream.StreamedReply`), then replaced by the grounded
answer. Every
message goes out with `AllowedMentions.none()`: text echoed from a question or written by
an LLM never pings anyone.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Protocol

import discord
from discord import app_commands

from rag.conversation import CONVERSATION_TURNS
from rag.settings import Settings
from rag.types import Answer, Turn

from .discord_format import Reply, question_line, render_answer, render_documents, thread_name
from .discord_stream import StreamedReply
from .feedback import FeedbackStore
from .ratelimit import RateLimiter

log = logging.getLogger("qabot.discord")

NO_PINGS = discord.AllowedMentions.none()
HISTORY_TURNS = CONVERSATION_TURNS  # earlier exchanges of a thread handed to rag's resolve()
DM_HISTORY_AGE = timedelta(minutes=30)  # a DM has no threads: only recent exchanges count as context
VOTE_LABELS = {"up": "👍", "down": "👎"}

#: Permissions the bot needs in the channels it answers in, and no more:
#: View Channel, Send Messages, Embed Links, Read Message History (replies need it),
#: Create Public Threads, Send Messages in Threads.
REQUIRED_PERMISSIONS = discord.Permissions(
    view_channel=True,
    send_messages=True,
    embed_links=True,
    read_message_history=True,
    create_public_threads=True,
    send_messages_in_threads=True,
)


class Pipeline(Protocol):
    """What the bot needs from `rag.pipeline.QAPipeline`."""

    def ask(self, question: str, history: Sequence[Turn] = (), *, on_token: Callable[[str], None] | None = None) -> Answer: ...

    def documents(self) -> list[Any]: ...

    def reindex(self) -> Any: ...


def bot_intents(settings: Settings) -> discord.Intents:
    """Only what the bot reads: guild channels and threads, messages, their text, DMs if enabled.

    `message_content` is privileged: enable "Message Content Intent" in the developer portal,
    or thread follow-ups (which do not mention the bot) arrive without text.
    """
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.message_content = True
    intents.dm_messages = settings.discord_dms
    return intents


def invite_url(application_id: int) -> str:
    """The OAuth2 URL that adds the bot to a server with exactly the permissions it needs."""
    return discord.utils.oauth_url(
        application_id, permissions=REQUIRED_PERMISSIONS, scopes=("bot", "applications.commands")
    )


def error_reference() -> str:
    return uuid.uuid4().hex[:8]


def apology(ref: str) -> str:
    return f"Sorry, something went wrong on my side while answering. If it keeps happening, give an admin this reference: `{ref}`."


class VoteButton(discord.ui.DynamicItem[discord.ui.Button], template=r"qabot:vote:(?P<vote>up|down):(?P<answer>[0-9a-f]{32})"):
    """👍/👎 under an answer; the custom_id carries the answer id, so it works after a restart."""

    def __init__(self, vote: str, answer_id: str) -> None:
        self.vote = vote
        self.answer_id = answer_id
        super().__init__(
            discord.ui.Button(
                style=discord.ButtonStyle.secondary,
                emoji=VOTE_LABELS[vote],
                custom_id=f"qabot:vote:{vote}:{answer_id}",
            )
        )

    @classmethod
    async def from_custom_id(cls, interaction: discord.Interaction, item: discord.ui.Button, match: re.Match[str], /) -> VoteButton:
        return cls(match["vote"], match["answer"])

    async def callback(self, interaction: discord.Interaction) -> None:
        bot = interaction.client
        assert isinstance(bot, QABot)
        stored = await asyncio.to_thread(bot.feedback.record_vote, self.answer_id, self.vote, interaction.user.id)
        text = f"Thanks — your {VOTE_LABELS[self.vote]} is recorded." if stored else "That answer is too old to rate."
        await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)


def feedback_view(answer_id: str) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(VoteButton("up", answer_id))
    view.add_item(VoteButton("down", answer_id))
    return view


@dataclass
class _Ask:
    """One question on its way through the bot."""

    question: str
    user_id: int
    history: Sequence[Turn]
    header: str | None  # question shown above the answer (slash commands)


class QABot(discord.Client):
    """qabot on Discord: mentions, replies, thread follow-ups, DMs, /ask, /sources, /reindex."""

    def __init__(
        self,
        *,
        pipeline: Pipeline,
        settings: Settings,
        feedback: FeedbackStore,
        limiter: RateLimiter | None = None,
        **options: Any,
    ) -> None:
        options.setdefault("intents", bot_intents(settings))
        super().__init__(allowed_mentions=NO_PINGS, **options)
        self.pipeline = pipeline
        self.settings = settings
        self.feedback = feedback
        self.limiter = limiter or RateLimiter(settings.rate_limit)
        self.tree = app_commands.CommandTree(self)
        self.tree.on_error = self._on_app_command_error  # type: ignore[method-assign]
        self._slots = asyncio.Semaphore(settings.max_concurrent)
        self._waiting = 0
        self._executor = ThreadPoolExecutor(max_workers=settings.max_concurrent, thread_name_prefix="qabot-answer")
        self._reindexing = asyncio.Lock()

    def __repr__(self) -> str:
        return f"<QABot user={self.user!s} guilds={len(self.guilds)}>"

    # ---------------------------------------------------------------------------- lifecycle
    async def setup_hook(self) -> None:
        self.pipeline.prepare_conversations()  # thread replies are follow-ups: parse them without waiting
        self.add_dynamic_items(VoteButton)
        self._register_commands()
        if self.settings.discord_guild_id:
            guild = discord.Object(int(self.settings.discord_guild_id))
            self.tree.copy_global_to(guild=guild)
            synced = await self.tree.sync(guild=guild)
            log.info("synced %d slash commands to guild %s", len(synced), guild.id)
        else:
            synced = await self.tree.sync()
            log.info("synced %d global slash commands (they can take up to an hour to appear)", len(synced))

    async def on_ready(self) -> None:
        assert self.user is not None
        log.info("connected as %s (id %s) to %d servers; invite: %s", self.user, self.user.id, len(self.guilds),
                 invite_url(self.application_id or self.user.id))

    async def close(self) -> None:
        await super().close()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # --------------------------------------------------------------------------- commands
    def _register_commands(self) -> None:
        bot = self

        @app_commands.command(name="ask", description="Ask a question about the news articles.")
        @app_commands.describe(question="Your question, e.g. who signed the 5G agreement?")
        async def ask(interaction: discord.Interaction, question: str) -> None:
            await bot._ask_command(interaction, question)

        @app_commands.command(name="sources", description="List the articles qabot answers from.")
        async def sources(interaction: discord.Interaction) -> None:
            await interaction.response.defer(ephemeral=True, thinking=True)
            docs = await asyncio.to_thread(bot.pipeline.documents)
            await interaction.followup.send(render_documents(docs), ephemeral=True, allowed_mentions=NO_PINGS)

        @app_commands.command(name="reindex", description="Re-read the corpus folder and update the index.")
        @app_commands.default_permissions(manage_guild=True)
        @app_commands.guild_only()
        async def reindex(interaction: discord.Interaction) -> None:
            await bot._reindex_command(interaction)

        for command in (ask, sources, reindex):
            self.tree.add_command(command)

    async def _ask_command(self, interaction: discord.Interaction, question: str) -> None:
        refusal = self._refusal(interaction.channel, interaction.user.id, question, in_dm=interaction.guild is None)
        if refusal is not None:  # a slash command always gets a reply, even where a message would get none
            text = refusal or self._rate_limit_text(interaction.user.id)
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)
            return
        await interaction.response.defer(thinking=True)  # Discord allows 3 s for this; answering can take longer
        queued = False

        async def notify_queued(position: int) -> None:
            nonlocal queued
            queued = True
            await interaction.edit_original_response(content=_queued_text(position), allowed_mentions=NO_PINGS)

        channel = interaction.channel
        conversation = channel.id if isinstance(channel, (discord.Thread, discord.DMChannel)) else None

        async def show(text: str) -> discord.InteractionMessage:  # the "thinking…" response grows
            return await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)

        stream: StreamedReply[discord.InteractionMessage] = StreamedReply(
            show, lambda _response, text: show(text), header=question_line(question))
        try:
            history = await self._history(conversation, dm=interaction.guild is None)
            ask = _Ask(question.strip(), interaction.user.id, history, header=question)
            try:
                answer = await self._answer(ask, notify_queued, stream)
            finally:
                streamed = await stream.finish()
            answer_id = await asyncio.to_thread(self.feedback.record_answer, answer, channel_id=conversation)
            sent: list[discord.Message] = []
            for i, (reply, view) in enumerate(_with_view(render_answer(answer, question=ask.header), answer_id)):
                if i == 0 and streamed is not None:  # the streamed response becomes the answer's first message
                    sent.append(await interaction.edit_original_response(
                        content=reply.content or None, embeds=list(reply.embeds), view=view, allowed_mentions=NO_PINGS))
                    continue
                sent.append(
                    await interaction.followup.send(
                        reply.content or discord.utils.MISSING,
                        embeds=list(reply.embeds),
                        view=view or discord.utils.MISSING,
                        allowed_mentions=NO_PINGS,
                        wait=True,
                    )
                )
            await asyncio.to_thread(self.feedback.link_messages, answer_id, [m.id for m in sent])
            if queued and streamed is None:
                await interaction.delete_original_response()
            thread_id = await self._open_thread_from_answer(channel, sent[0], question)
            if thread_id is not None:
                await asyncio.to_thread(self.feedback.link_messages, answer_id, [], channel_id=thread_id)
        except Exception as exc:  # noqa: BLE001 - the user gets an answer either way
            text = self._error_text(exc)
            if queued or stream.message is not None:  # replace the notice or partial text rather than leave it
                await interaction.edit_original_response(content=text, allowed_mentions=NO_PINGS)
            else:
                await interaction.followup.send(text, allowed_mentions=NO_PINGS, ephemeral=True)

    async def _open_thread_from_answer(
        self, channel: Any, message: discord.Message, question: str
    ) -> int | None:
        """A slash-command answer in a channel gets a thread for follow-ups, like a mention does."""
        if not isinstance(channel, discord.TextChannel):
            return None
        try:
            thread = await channel.create_thread(name=thread_name(question), message=message, auto_archive_duration=1440)
        except discord.HTTPException as exc:
            log.warning("could not open a thread for an answer in channel %s: %s", channel.id, exc)
            return None
        return thread.id

    async def _reindex_command(self, interaction: discord.Interaction) -> None:
        perms = interaction.permissions
        if not (perms.manage_guild or perms.administrator):
            await interaction.response.send_message(
                "Only members with the **Manage Server** permission can reindex.", ephemeral=True, allowed_mentions=NO_PINGS
            )
            return
        if self._reindexing.locked():
            await interaction.response.send_message("A reindex is already running.", ephemeral=True)
            return
        await interaction.response.defer(ephemeral=True, thinking=True)
        async with self._reindexing:
            started = time.perf_counter()
            report = await asyncio.to_thread(self.pipeline.reindex)
        log.info("reindex by %s took %.1f s", interaction.user.id, time.perf_counter() - started)
        await interaction.followup.send(f"Reindexed: {report.summary()}", ephemeral=True, allowed_mentions=NO_PINGS)

    async def _on_app_command_error(self, interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
        original = getattr(error, "original", error)
        text = self._error_text(original)
        if interaction.response.is_done():
            await interaction.followup.send(text, ephemeral=True, allowed_mentions=NO_PINGS)
        else:
            await interaction.response.send_message(text, ephemeral=True, allowed_mentions=NO_PINGS)

    # --------------------------------------------------------------------------- messages
    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._on_message(message)
        except Exception as exc:  # noqa: BLE001 - never let one message take the handler down
            try:
                await message.channel.send(self._error_text(exc), allowed_mentions=NO_PINGS)
            except discord.HTTPException:
                log.warning("could not even send the apology in channel %s", message.channel.id)

    async def _on_message(self, message: discord.Message) -> None:
        me = self.user
        if me is None or message.author.bot or message.author.id == me.id:
            return
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return
        channel: Any = message.channel
        in_dm = message.guild is None
        replied = _replied_message(message)
        replied_to_bot = replied is not None and replied.author.id == me.id
        mentioned = any(user.id == me.id for user in message.mentions)
        if in_dm:
            if not self.settings.discord_dms:
                return
        else:
            if isinstance(channel, discord.PartialMessageable):  # a thread not cached yet
                try:
                    channel = await self.fetch_channel(channel.id)
                except discord.HTTPException:
                    return  # not visible to the bot: nothing it could answer in
            if not self._channel_allowed(channel):
                return
            own_thread = isinstance(channel, discord.Thread) and channel.owner_id == me.id
            if not (mentioned or replied_to_bot or own_thread):
                return
        question = question_text(message, me.id)
        if not question and not (mentioned or replied_to_bot or in_dm):
            return  # an attachment or sticker in one of our threads: not a question
        refusal = self._refusal(channel, message.author.id, question, in_dm=in_dm)
        if refusal is not None:
            if refusal:
                await message.reply(refusal, mention_author=False, allowed_mentions=NO_PINGS)
            return

        # Where the answer goes, and which conversation it continues.
        if in_dm or isinstance(channel, discord.Thread):
            dest: Any = channel
            reference: discord.Message | None = message
            conversation: int | None = channel.id
        else:
            dest, reference, conversation = channel, message, None
            try:
                dest = await message.create_thread(name=thread_name(question), auto_archive_duration=1440)
                reference, conversation = None, dest.id
            except discord.HTTPException as exc:  # no permission, or a channel type without threads
                log.warning("answering in channel %s without a thread: %s", channel.id, exc)

        if replied is not None and replied_to_bot and not isinstance(channel, discord.Thread):
            history = await self._history_before(replied)  # the conversation the replied answer belongs to
        else:
            history = await self._history(conversation, dm=in_dm)
        ask = _Ask(question, message.author.id, history, header=None)

        notice: discord.Message | None = None

        async def notify_queued(position: int) -> None:
            nonlocal notice
            notice = await dest.send(_queued_text(position), allowed_mentions=NO_PINGS)

        async def post(text: str) -> discord.Message:
            return await dest.send(text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS)

        async def edit(message: discord.Message, text: str) -> discord.Message:
            return await message.edit(content=text, allowed_mentions=NO_PINGS)

        stream: StreamedReply[discord.Message] = StreamedReply(post, edit)
        try:
            try:
                async with dest.typing():
                    answer = await self._answer(ask, notify_queued, stream)
            finally:
                streamed = await stream.finish()
            answer_id = await asyncio.to_thread(self.feedback.record_answer, answer, channel_id=conversation)
            sent = await self._send_answer(dest, render_answer(answer), answer_id, reference, streamed)
            await asyncio.to_thread(self.feedback.link_messages, answer_id, [m.id for m in sent])
        except Exception as exc:  # noqa: BLE001 - the asker gets a reply either way
            text = self._error_text(exc)
            if stream.message is not None:  # the partial answer becomes the apology
                await stream.message.edit(content=text, embeds=[], view=None, allowed_mentions=NO_PINGS)
            else:
                await dest.send(text, reference=reference, mention_author=False, allowed_mentions=NO_PINGS)
        finally:
            if notice is not None:
                with contextlib.suppress(discord.HTTPException):
                    await notice.delete()

    async def _send_answer(
        self, dest: Any, replies: Sequence[Reply], answer_id: str, reference: discord.Message | None,
        streamed: discord.Message | None = None,
    ) -> list[discord.Message]:
        """Send the answer's messages; a streamed message (already a reply to the question) becomes the first."""
        sent = []
        for i, (reply, view) in enumerate(_with_view(replies, answer_id)):
            if i == 0 and streamed is not None:
                sent.append(await streamed.edit(content=reply.content or None, embeds=list(reply.embeds), view=view,
                                                allowed_mentions=NO_PINGS))
                continue
            sent.append(
                await dest.send(
                    reply.content or None,
                    embeds=list(reply.embeds),
                    view=view,
                    reference=reference if i == 0 else None,
                    mention_author=False,
                    allowed_mentions=NO_PINGS,
                )
            )
        return sent

    # ----------------------------------------------------------------------- the question
    def _channel_allowed(self, channel: Any) -> bool:
        allowed = self.settings.channel_allowlist
        if not allowed:
            return True
        ids = {getattr(channel, "id", None), getattr(channel, "parent_id", None)}
        return bool(ids & allowed)

    def _refusal(self, channel: Any, user_id: int, question: str, *, in_dm: bool) -> str | None:
        """Why a question is not answered: a polite text, "" to stay silent, None to go ahead."""
        if in_dm and not self.settings.discord_dms:
            return "I don't answer direct messages here; please ask in the server."
        if not in_dm and not self._channel_allowed(channel):
            allowed = ", ".join(f"<#{c}>" for c in sorted(self.settings.channel_allowlist))
            return f"I only answer in {allowed}."
        if not question.strip():
            return "Ask me a question after the mention, for example: *who signed the 5G agreement?*"
        limit = self.settings.max_question_chars
        if len(question) > limit:
            return f"That question is {len(question):,} characters long; please keep it under {limit:,}."
        verdict = self.limiter.check(user_id)
        if not verdict.allowed:
            return self._rate_limit_text(user_id, verdict.retry_after) if verdict.warn else ""
        return None

    def _rate_limit_text(self, user_id: int, retry_after: float | None = None) -> str:
        wait = f"in {max(1, round(retry_after))} s" if retry_after is not None else "in a minute"
        return (
            f"You're asking quickly — I answer {self.limiter.limit} questions per person per minute. "
            f"Please try again {wait}."
        )

    async def _history(self, conversation: int | None, *, dm: bool) -> list[Turn]:
        if conversation is None:
            return []
        return await asyncio.to_thread(
            self.feedback.history, conversation, limit=HISTORY_TURNS, max_age=DM_HISTORY_AGE if dm else None
        )

    async def _history_before(self, replied: discord.Message) -> list[Turn]:
        """A reply to one of our answers continues that answer's conversation."""
        logged = await asyncio.to_thread(self.feedback.answer_for_message, replied.id)
        if logged is None:
            return [Turn(question="", answer=replied.content)] if replied.content else []
        if logged.channel_id is None:
            return [Turn(question=logged.question, answer=logged.answer)]
        return await asyncio.to_thread(
            self.feedback.history, logged.channel_id, limit=HISTORY_TURNS, until_answer=logged.id
        )

    # ------------------------------------------------------------------------- answering
    async def _answer(
        self, ask: _Ask, notify_queued: Callable[[int], Awaitable[None]], stream: StreamedReply[Any]
    ) -> Answer:
        """Run `pipeline.ask` in the worker pool, at most `max_concurrent` at a time, streaming into `stream`."""
        self._waiting += 1
        try:
            if self._slots.locked():
                await notify_queued(self._waiting)
            await self._slots.acquire()
        finally:
            self._waiting -= 1
        started = time.perf_counter()
        try:
            loop = asyncio.get_running_loop()
            stream.start()
            call = functools.partial(self.pipeline.ask, ask.question, tuple(ask.history), on_token=stream.on_token)
            answer = await loop.run_in_executor(self._executor, call)
        finally:
            self._slots.release()
        log.info(
            "answered user %s in %.0f ms (backend %s%s, %d turns of history)",
            ask.user_id, (time.perf_counter() - started) * 1000, answer.backend,
            ", refused" if answer.refused else "", len(ask.history),
        )
        return answer

    def _error_text(self, exc: BaseException) -> str:
        """What the user sees for an exception; details go to the log with a reference id."""
        from rag.errors import StoreUnavailableError
        from rag.pipeline import InvalidQuestionError  # loaded already: the bot runs with the pipeline

        if isinstance(exc, InvalidQuestionError):
            return str(exc)  # written for the asker: empty, too long, control characters
        if isinstance(exc, StoreUnavailableError):
            log.warning("index unavailable while answering: %s", exc)
            return "The article index is unavailable right now, so I can't answer. Please try again in a minute."
        ref = error_reference()
        log.error("error %s while answering: %s", ref, exc, exc_info=exc)
        return apology(ref)


# ------------------------------------------------------------------------------- helpers
def _queued_text(position: int) -> str:
    ahead = position - 1
    if ahead <= 0:
        return "⏳ You're next in the queue — I'm finishing other answers first."
    return f"⏳ You're in the queue ({ahead} question{'s' if ahead != 1 else ''} ahead of you); I'll answer here shortly."


def _with_view(replies: Sequence[Reply], answer_id: str) -> list[tuple[Reply, discord.ui.View | None]]:
    """Pair each message with its view: vote buttons go under the last one."""
    return [(reply, feedback_view(answer_id) if i == len(replies) - 1 else None) for i, reply in enumerate(replies)]


def _replied_message(message: discord.Message) -> discord.Message | None:
    ref = message.reference
    if ref is None:
        return None
    resolved = ref.resolved if isinstance(ref.resolved, discord.Message) else ref.cached_message
    return resolved


_MENTION = re.compile(r"<(@[!&]?|#)(\d+)>")


def question_text(message: discord.Message, bot_id: int) -> str:
    """The question in a message: without the bot's mention, other mentions made readable."""
    users = {u.id: u.display_name for u in message.mentions}
    roles = {r.id: r.name for r in message.role_mentions}
    channels = {c.id: getattr(c, "name", str(c.id)) for c in message.channel_mentions}

    def readable(m: re.Match[str]) -> str:
        kind, ident = m.group(1), int(m.group(2))
        if kind in ("@", "@!"):
            return "" if ident == bot_id else "@" + users.get(ident, "someone")
        if kind == "@&":
            return "@" + roles.get(ident, "role")
        return "#" + channels.get(ident, "channel")

    return " ".join(_MENTION.sub(readable, message.content).split())


class ShardedQABot(QABot, discord.AutoShardedClient):
    """The same bot on discord.py's AutoShardedClient: Discord says how many shards to open
    (needed past 2,500 guilds); one process runs them all on one pipeline."""
