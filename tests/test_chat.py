"""`qabot chat` driven through a real pseudo-terminal, as a person would use it."""

from __future__ import annotations

import os
from pathlib import Path

import pexpect
import pytest

from .conftest import CORPUS, QABOT, REPO

pytestmark = pytest.mark.timeout(180)
PROMPT = "you> "


def _spawn(data_dir: Path) -> pexpect.spawn:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}
    env.update({"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data_dir), "PYTHONPATH": str(REPO),
                "HF_HUB_OFFLINE": "1", "TERM": "xterm", "COLUMNS": "200", "LINES": "50"})
    child = pexpect.spawn(QABOT[0], [*QABOT[1:], "chat"], env=env, encoding="utf-8", timeout=60, dimensions=(50, 200))
    child.expect(r"articles indexed")
    child.expect_exact(PROMPT)
    return child


def test_chat_answers_follows_up_and_handles_commands(built_data_dir: Path) -> None:
    child = _spawn(built_data_dir)
    try:
        child.sendline("/help")
        child.expect_exact("/sources")
        child.expect_exact(PROMPT)
        child.sendline("/sources")
        child.expect_exact("No sources yet")
        child.expect_exact(PROMPT)

        child.sendline("Who is the editor-in-chief of 5Gradar?")
        child.expect_exact("Dan Oliver")
        child.expect_exact("Sources")
        child.expect_exact(PROMPT)

        child.sendline("/sources")
        child.expect(r"\[1\]\S* Czech government sides with US")
        child.expect_exact(PROMPT)

        child.sendline("How many moons does Jupiter have?")
        child.expect_exact("do not cover")
        child.expect_exact(PROMPT)

        # Arrow-up recalls the last line (readline history), Ctrl-C abandons the line, not the chat.
        child.send("\x1b[A")
        child.expect_exact("Jupiter")
        child.sendintr()
        child.expect_exact("Ctrl-C")
        child.expect_exact(PROMPT)

        child.sendline("/reset")
        child.expect_exact("Conversation reset")
        child.expect_exact(PROMPT)
        child.sendline("/nonsense")
        child.expect_exact("Unknown command")
        child.expect_exact(PROMPT)

        child.sendeof()  # Ctrl-D leaves cleanly
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before


def test_chat_quit_command(built_data_dir: Path) -> None:
    child = _spawn(built_data_dir)
    try:
        child.sendline("/quit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
