"""`qabot discord` (run the bot) and `qabot feedback export` (votes as JSONL); added to the group by `bot/cli.py`."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
from collections.abc import Callable
from typing import Any

import click

from rag.errors import QabotError, SettingsError
from rag.settings import Settings

from .cli_common import pass_settings, user_errors

log = logging.getLogger("qabot.discord")

TOKEN_HINT = "set DISCORD_TOKEN in the environment or .env to the bot token from the Discord developer portal (Bot → Reset Token)"


@click.command("discord")
@click.option("--check", is_flag=True,
              help="Only check the settings and DISCORD_TOKEN (a login over REST), then exit: 2 when the token is "
                   "missing or rejected, else 0 (Discord unreachable is a warning). docker-compose.yml runs it first.")
@pass_settings
@user_errors
def discord_command(settings: Settings, check: bool) -> None:
    """Run the Discord bot (needs DISCORD_TOKEN; see the README for creating the application).

    Answers mentions, replies to its answers and /ask in the allowed channels (and DMs when
    QABOT_DISCORD_DMS is true), each in a thread for follow-ups. Stops on Ctrl-C.
    """
    if check:
        check_discord(settings)
    else:
        run_discord(settings)


def _token(settings: Settings) -> str:
    token = settings.discord_token.strip()
    if not token:
        raise SettingsError(f"DISCORD_TOKEN is not set: {TOKEN_HINT}")
    return token


def check_discord(settings: Settings) -> None:
    """What a restart cannot fix fails (exit 2): invalid settings (already refused when they were loaded), a
    missing or rejected token. Discord out of reach is only a warning: the bot itself retries, and a
    restart policy restarts it, until the network is back."""
    token = _token(settings)
    try:
        asyncio.run(check_token(token))
    except SettingsError:
        raise
    except QabotError as exc:
        click.echo(f"qabot: warning: {exc}; the token was not checked", err=True)
        return
    click.echo("Discord accepted DISCORD_TOKEN")


def run_discord(settings: Settings, pipeline_factory: Callable[[Settings], Any] | None = None) -> None:
    """Check the token, load the pipeline, run the bot until it is stopped."""
    token = _token(settings)
    if pipeline_factory is None:
        from rag.index import Index
        from rag.pipeline import QAPipeline

        def pipeline_factory(s: Settings) -> Any:
            # the bot writes (a sync at start and on /reindex): it holds the writer lock while it runs
            return QAPipeline.from_settings(s, index=Index.from_settings(s, lock="hold", preload=True))
    asyncio.run(serve(settings, token, pipeline_factory))


async def check_token(token: str) -> None:
    """Log in over REST only, so a wrong token fails in a second instead of after loading the model."""
    import aiohttp
    import discord

    discord.VoiceClient.warn_nacl = discord.VoiceClient.warn_dave = False  # qabot never joins voice
    # Guilds on: with no intents at all discord.py logs a warning about them, a second line under the error.
    probe = discord.Client(intents=discord.Intents(guilds=True))
    try:
        await probe.login(token)
    except discord.LoginFailure:
        raise SettingsError(f"Discord rejected DISCORD_TOKEN (401 Unauthorized): {TOKEN_HINT}") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise QabotError(f"cannot reach Discord ({type(exc).__name__}); check the network and try again") from None
    finally:
        await probe.close()


async def serve(settings: Settings, token: str, pipeline_factory: Callable[[Settings], Any]) -> None:
    import discord

    from .discord_bot import QABot, ShardedQABot
    from .feedback import FeedbackStore

    await check_token(token)
    log.info("loading the index and model…")
    pipeline = await asyncio.to_thread(pipeline_factory, settings)
    # The model and index are loaded for good: move them out of the garbage collector's reach, so a
    # full collection (measured at 160-540 ms) never stalls the event loop and its heartbeats.
    gc.collect()
    gc.freeze()
    bot_class = ShardedQABot if settings.discord_autoshard else QABot
    bot = bot_class(pipeline=pipeline, settings=settings, feedback=FeedbackStore.from_settings(settings))
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError):  # SIGTERM (docker stop) closes the connection cleanly
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(bot.close()))
    async with bot:
        try:
            await bot.start(token)
        except discord.LoginFailure:
            raise SettingsError(f"Discord rejected DISCORD_TOKEN (401 Unauthorized): {TOKEN_HINT}") from None
        except discord.PrivilegedIntentsRequired:
            raise SettingsError(
                "Discord refused the Message Content intent: enable it in the developer portal "
                "(Bot → Privileged Gateway Intents → Message Content Intent) and start again"
            ) from None


@click.group("feedback")
def feedback_group() -> None:
    """Votes (👍/👎) collected by the Discord bot."""


@feedback_group.command("export")
@pass_settings
@user_errors
def feedback_export(settings: Settings) -> None:
    """Print every vote as one JSON object per line (question, answer, sources, vote, user hash, time).

    Exits 2 when the data folder does not exist and 1 when it holds no feedback yet (the
    Discord bot creates it): a mistyped --data must not look like "no votes".
    """
    from .feedback import FeedbackStore

    path = settings.data_dir / FeedbackStore.FILENAME
    if not settings.data_dir.is_dir():
        raise SettingsError(f"data folder {settings.data_dir} does not exist; check --data or QABOT_DATA_DIR")
    if not path.is_file():
        raise QabotError(
            f"no feedback in {settings.data_dir} ({FeedbackStore.FILENAME} is created when `qabot discord` runs); "
            "check --data or QABOT_DATA_DIR"
        )
    for line in FeedbackStore(path).export_jsonl():
        click.echo(line)
