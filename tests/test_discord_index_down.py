"""The bot over a Chroma server that goes away: users are told the index is unavailable, then answered again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from rag.index import Index
from rag.pipeline import QAPipeline

from .fakes.fake_discord import FakeDiscord
from .test_discord_bot import bot_settings, connected, has_buttons, mention, run
from .fakes.chroma_server import ChromaServer
from .test_server_mode import EDITOR_Q

pytestmark = pytest.mark.timeout(240)


def test_index_down_then_back(chroma_server: ChromaServer, corpus_copy: Path, tmp_path: Path, embedder: Any) -> None:
    settings = chroma_server.settings(corpus_copy, tmp_path / "data")
    pipeline = QAPipeline.from_settings(settings, index=Index.from_settings(settings, embedder=embedder))

    async def scenario() -> None:
        async with FakeDiscord() as fake, connected(fake, pipeline, bot_settings(tmp_path)):
            alice = fake.add_user("alice")
            _, replies = await mention(fake, alice, EDITOR_Q)
            assert "Dan Oliver" in replies[-1]["content"]

            await asyncio.to_thread(chroma_server.kill)
            asked = await fake.user_says(f"<@{fake.bot.id}> {EDITOR_Q}", author=alice)
            where = int(asked["id"])

            def told() -> bool:
                texts = [m["content"] for m in fake.bot_messages(where)] + [m["content"] for m in fake.bot_messages(fake.general_id)]
                return any("index is unavailable" in t for t in texts)

            await fake.wait_until(told, timeout=30)
            assert not any(has_buttons(m) for m in fake.bot_messages(where))
            assert "reference" not in " ".join(m["content"] for m in fake.bot_messages(fake.general_id))

            await asyncio.to_thread(chroma_server.start)  # same port, same data: the bot recovers by itself
            _, replies = await mention(fake, alice, EDITOR_Q)
            assert "Dan Oliver" in replies[-1]["content"]

    run(scenario(), timeout=180)
