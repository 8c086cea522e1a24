"""`qabot discord` and `qabot feedback export`: token errors, intents, the token kept out of logs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from bot.discord_cli import discord_command, feedback_group, run_discord
from bot.feedback import FeedbackStore
from rag.errors import SettingsError
from rag.settings import load_settings
from rag.types import Answer, Source
from tests.conftest import assert_one_line_error, run_qabot
from tests.fakes.fake_discord import FakeDiscordThread

pytestmark = pytest.mark.timeout(60)

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
SECRET = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gsecret.wrong-token-do-not-log"


def _settings(tmp_path: Path, **overrides: Any):  # -> Settings
    return load_settings(environ={}, corpus_dir=CORPUS, data_dir=tmp_path / "data", **overrides)


def _stderr_lines(result: Any) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


def test_a_missing_token_says_where_to_set_it(tmp_path: Path) -> None:
    result = CliRunner().invoke(discord_command, [], obj=_settings(tmp_path))
    assert result.exit_code == 2
    (line,) = _stderr_lines(result)
    assert line.startswith("qabot: error: DISCORD_TOKEN is not set")
    assert "DISCORD_TOKEN in the environment or .env" in line


def test_a_rejected_token_fails_fast_in_one_line_without_showing_it(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = _settings(tmp_path, discord_token=SECRET)
    with FakeDiscordThread() as fake, fake.patch_client(), caplog.at_level(logging.DEBUG):
        result = CliRunner().invoke(discord_command, [], obj=settings)
    assert result.exit_code == 2, result.output
    (line,) = _stderr_lines(result)
    assert "Discord rejected DISCORD_TOKEN" in line and "DISCORD_TOKEN in the environment or .env" in line
    assert SECRET not in result.output and SECRET not in result.stderr
    assert all(SECRET not in record.getMessage() for record in caplog.records)
    assert SECRET not in repr(settings)
    # Checked over REST before the model is loaded, and the gateway was never opened.
    assert [(r.path, r.status) for r in fake.requests] == [("/users/@me", 401)]
    loaded: list[Any] = []
    with FakeDiscordThread() as fake, fake.patch_client(), pytest.raises(SettingsError, match="rejected"):
        run_discord(settings, pipeline_factory=loaded.append)
    assert loaded == []


def test_a_refused_message_content_intent_is_a_one_line_error_and_the_token_never_logged(
    tmp_path: Path, pipeline: Any, caplog: pytest.LogCaptureFixture
) -> None:
    with FakeDiscordThread(enabled_privileged_intents=0) as fake, fake.patch_client():
        settings = _settings(tmp_path, discord_token=fake.token)
        with caplog.at_level(logging.DEBUG), pytest.raises(SettingsError, match="Message Content Intent"):
            run_discord(settings, pipeline_factory=lambda _settings: pipeline)
    assert fake.identifies and fake.identifies[0]["token"] == fake.token  # it did get as far as IDENTIFY
    assert fake.commands["global"], "commands were synced before connecting"
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)
    assert logged and fake.token not in logged


def test_feedback_export_prints_jsonl(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    nothing = CliRunner().invoke(feedback_group, ["export"], obj=settings)
    assert nothing.exit_code == 1 and nothing.output.startswith("qabot: error: no feedback in "), nothing.output

    store = FeedbackStore.from_settings(settings)
    source = Source(1, "000_320184e85fe372d2.txt", "US and Poland sign", "", "", "Pence signed", 0.7)
    first = store.record_answer(Answer("Who signed?", "Pence [1].", (source,)))
    second = store.record_answer(Answer("Where?", "Warsaw [1].", (source,)))
    store.record_vote(first, "up", 1)
    store.record_vote(second, "down", 2)
    result = CliRunner().invoke(feedback_group, ["export"], obj=settings)
    assert result.exit_code == 0
    records = [json.loads(line) for line in result.output.splitlines()]
    assert [(r["question"], r["vote"]) for r in records] == [("Who signed?", "up"), ("Where?", "down")]
    assert set(records[0]) >= {"question", "answer", "sources", "vote", "user", "time"}


def test_the_qabot_command_has_discord_and_feedback(tmp_path: Path) -> None:
    """Through the installed `qabot` entry point, as a user runs it."""
    result = run_qabot("--data", str(tmp_path / "data"), "discord", env={"DISCORD_TOKEN": ""})
    assert_one_line_error(result, 2, "DISCORD_TOKEN is not set", "set DISCORD_TOKEN in the environment or .env")
    helped = run_qabot("feedback", "export", "--help")
    assert helped.returncode == 0 and "JSON" in helped.stdout


def test_feedback_export_with_nothing_to_export_says_so(tmp_path: Path) -> None:
    result = run_qabot("--data", str(tmp_path / "mistyped"), "feedback", "export")
    assert_one_line_error(result, 2, f"data folder {tmp_path / 'mistyped'} does not exist", "--data")
    (tmp_path / "data").mkdir()
    result = run_qabot("--data", str(tmp_path / "data"), "feedback", "export")
    assert_one_line_error(result, 1, f"no feedback in {tmp_path / 'data'}", "qabot discord")
