"""OWASP LLM02 (secrets never shown or logged) and faults that must end in a clear, bounded outcome."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from pathlib import Path

import pytest

from rag.index import Index
from rag.pipeline import QAPipeline

from .conftest import CORPUS, REPO, assert_one_line_error, make_settings, run_qabot
from .fakes.llm_servers import FakeOpenAI

pytestmark = pytest.mark.timeout(180)
KEY = "sk-SECRET-4c0ffee4c0ffee"


def test_api_key_never_appears_in_answers_notices_or_logs(built_data_dir: Path, embedder, caplog: pytest.LogCaptureFixture) -> None:  # noqa: ANN001
    caplog.set_level(logging.DEBUG)
    with FakeOpenAI() as server:
        settings = make_settings(CORPUS, built_data_dir, answerer="openai", llm_base_url=server.base_url,
                                 llm_model="fake", openai_api_key=KEY, llm_timeout=3.0)
        pipeline = QAPipeline.from_settings(settings, sync=False, index=Index.from_settings(settings, embedder=embedder))
        server.enqueue_error(status=401, message=f"Incorrect API key provided: {KEY}")
        server.enqueue_error(status=500, message=f"upstream failed for key {KEY}")
        for _ in range(2):
            answer = pipeline.ask("Which Czech agency is organising the Prague 5G security meeting?")
            assert KEY not in json.dumps(answer.to_json()) + answer.notice
            assert "offline answer" in answer.notice
        assert server.chat_requests[0].header("authorization") == f"Bearer {KEY}"  # the key was really used
    assert KEY not in caplog.text
    assert KEY not in repr(settings)


def test_dotenv_is_ignored_by_git() -> None:
    result = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO, timeout=30)
    assert result.returncode == 0


def test_read_only_data_folder_gives_a_clear_error_and_the_index_survives(tmp_path: Path, built_data_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(built_data_dir, data)
    mount = tmp_path / "ro"
    mount.mkdir()
    bind = subprocess.run(["mount", "--bind", str(data), str(mount)], capture_output=True, timeout=30)
    if bind.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root in a mount namespace)")
    try:
        remount = subprocess.run(["mount", "-o", "remount,ro,bind", str(mount)], capture_output=True, timeout=30)
        if remount.returncode != 0:
            pytest.skip("cannot remount read-only here")
        env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(mount)}
        assert_one_line_error(run_qabot("ingest", env=env), 2, "QABOT_DATA_DIR", "Read-only file system")
        assert_one_line_error(run_qabot("ask", "Who signed the deal?", env=env), 2, "choose a writable folder")
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True, timeout=30)
    result = run_qabot("ask", "--json", "Which Czech agency is organising the Prague 5G security meeting?",
                       env={"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    assert "NUKIB" in json.loads(result.stdout)["answer"]
