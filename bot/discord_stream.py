"""An answer that grows in Discord while the LLM writes it, then becomes the grounded answer.

`StreamedReply` posts one message as soon as the first text arrives (or after
`FIRST_MESSAGE_AFTER_S` of a slow answer with none yet) and edits it as text comes, at most
once every `EDIT_INTERVAL_S`: Discord allows 5 message edits per 5 s per channel. The bot then
edits that same message into the first message of the final answer, so a streamed answer
leaves exactly the messages an unstreamed one would.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import discord

from .discord_format import render_preview

log = logging.getLogger("qabot.discord")

#: At most one edit of a message per this many seconds (5 per 5 s per channel, with a margin).
EDIT_INTERVAL_S = 1.2
#: A slow answer gets a visible message this soon, before any text (prompt processing can take seconds).
FIRST_MESSAGE_AFTER_S = 1.0

M = TypeVar("M")


class StreamedReply(Generic[M]):
    """The message of one answer in progress; `on_token` may be called from any thread."""

    def __init__(
        self, post: Callable[[str], Awaitable[M]], edit: Callable[[M, str], Awaitable[Any]], *, header: str = ""
    ) -> None:
        self._post, self._edit = post, edit
        self._header = header  # shown above the text (the question, for slash commands)
        self._loop = asyncio.get_running_loop()
        self._parts: list[str] = []
        self._changed = asyncio.Event()
        self._done = False
        self._task: asyncio.Task[None] | None = None
        self.message: M | None = None
        self.edits = 0
        self._last_write = 0.0

    def start(self) -> None:
        """Begin showing the answer (call once the question has its turn, not while it is queued)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def on_token(self, delta: str) -> None:
        """`QAPipeline.ask(on_token=...)`: called from the worker thread with each delta."""
        self._loop.call_soon_threadsafe(self._add, delta)

    def _add(self, delta: str) -> None:
        if not self._done:
            self._parts.append(delta)
            self._changed.set()

    async def _run(self) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), FIRST_MESSAGE_AFTER_S)
        if self._done:
            return  # answered before anything had to be shown
        self._changed.clear()
        try:
            self.message = await self._post(render_preview("".join(self._parts), self._header))
            self._last_write = time.monotonic()
            while not self._done:
                await self._changed.wait()
                self._changed.clear()
                await asyncio.sleep(max(0.0, self._last_write + EDIT_INTERVAL_S - time.monotonic()))
                if self._done:
                    return
                await self._edit(self.message, render_preview("".join(self._parts), self._header))
                self._last_write = time.monotonic()
                self.edits += 1
        except discord.HTTPException as exc:  # the final answer still goes out the usual way
            log.warning("could not show an answer in progress: %s", exc)

    async def finish(self) -> M | None:
        """Stop growing; the message to turn into the final answer, once an edit is allowed (None: none posted)."""
        self._done = True
        self._changed.set()
        if self._task is not None:
            await self._task
        if self.message is not None:
            await asyncio.sleep(max(0.0, self._last_write + EDIT_INTERVAL_S - time.monotonic()))
        return self.message
