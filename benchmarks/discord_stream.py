"""Time until a streamed answer is visible in Discord: real discord.py client and pipeline, fake Discord.

The LLM is the fake OpenAI-compatible server of the tests, streaming its reply one word every
`WORD_DELAY_S`; each question is asked by mention, one at a time. Measured as the fake Discord saw
it: from the question's message to the first message of the bot in the answer's thread, and to
the final (grounded) answer.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from .common import CORPUS, median, percentile

WORD_DELAY_S = 0.15
REPLY = ("Mike Pence and Mateusz Morawiecki signed the agreement in Warsaw [1], the article says, "
         "after the US campaign against Huawei [2].")
QUESTION = "Who signed the 5G agreement between the US and Poland?"


async def _measure(data: Path, n: int) -> dict[str, Any]:
    from bot.discord_bot import QABot
    from bot.feedback import FeedbackStore
    from rag.index import Index
    from rag.pipeline import QAPipeline
    from rag.settings import load_settings
    from tests.fakes.fake_discord import FakeDiscord
    from tests.fakes.llm_servers import FakeOpenAI, Reply

    first, final = [], []
    with FakeOpenAI(default_reply=Reply.text(REPLY, chunk_delay=WORD_DELAY_S)) as server:
        settings = load_settings(environ={}, corpus_dir=CORPUS, data_dir=data, answerer="openai", llm_model="fake",
                                 llm_base_url=server.base_url, llm_timeout=30.0)
        pipeline = QAPipeline.from_settings(settings, sync=False, index=Index.from_settings(settings))
        async with FakeDiscord() as fake:
            with fake.patch_client():
                bot = QABot(pipeline=pipeline, settings=settings.replace(rate_limit=0),
                            feedback=FeedbackStore.from_settings(settings), guild_ready_timeout=0.05)
                runner = asyncio.create_task(bot.start(fake.token))
                try:
                    await asyncio.wait_for(bot.wait_until_ready(), 30)
                    user = fake.add_user("alice")
                    for _ in range(n):
                        asked = await fake.user_says(f"<@{fake.bot.id}> {QUESTION}", author=user)
                        thread = int(asked["id"])
                        await fake.wait_until(lambda: any(m["components"] for m in fake.bot_messages(thread)), 60)
                        sent = fake.message_sent_at
                        first.append(min(sent[int(m["id"])] for m in fake.bot_messages(thread)) - sent[thread])
                        done = max(r.at for r in fake.requests if r.path.startswith(f"/channels/{thread}/messages"))
                        final.append(done - sent[thread])
                finally:
                    await bot.close()
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(runner, 10)
    return {"n": n, "first_message_median_s": median(first), "first_message_p95_s": percentile(first, 95),
            "final_median_s": median(final), "word_delay_s": WORD_DELAY_S, "first_message_s": first}


def discord_stream_benchmark(data: Path, n: int = 10) -> dict[str, Any]:
    """Median and p95 seconds from question to the first visible message, over `n` questions."""
    return asyncio.run(_measure(data, n))


def render_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    return [(f"Discord, streaming LLM ({r['word_delay_s']} s/word): question to first message, median / p95 of {r['n']} s"
             f" (to the grounded answer, median)",
             f"{r['first_message_median_s']:.2f} / {r['first_message_p95_s']:.2f} ({r['final_median_s']:.1f})", "", "",
             "≤ 1.5 s", "yes" if r["first_message_median_s"] <= 1.5 else "**no**")]
