"""A full disk and a damaged index, as a deployment meets them: one-line errors, and a way back
that loses nothing that had been reported as indexed.

The full disk is real: a tmpfs of a few megabytes (mounting needs root; the test skips where
it cannot mount, and runs in CI here, as root). Damaged files are made the way the faults left
them when measured: Chroma that ran out of space while writing its HNSW index left
`index_metadata.pickle` empty (a 9.5 MB tmpfs) or cut off at 32 KB (a 15 MB tmpfs), and every
later open failed with "Error deserializing pickle file"; a disk that lost the end of
`chroma.sqlite3` is a truncated file.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import CORPUS, assert_one_line_error, run_qabot

QUESTION = "Who is the editor-in-chief of 5Gradar?"
ANSWER_DOC = "004_71f387d13aa2b6f1.txt"

pytestmark = pytest.mark.timeout(300)


@contextlib.contextmanager
def tmpfs(path: Path, size_mb: int) -> Iterator[Path]:
    """A real file system of `size_mb` megabytes at `path`, unmounted afterwards."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    path.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(path)],
                             capture_output=True, text=True, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], capture_output=True, timeout=30)


def fill(device: Path, leave_bytes: int, name: str = "ballast") -> Path:
    """Take all but `leave_bytes` of the device's free space with one file (freed by deleting it)."""
    ballast = device / name
    size = shutil.disk_usage(device).free - leave_bytes
    fd = os.open(ballast, os.O_CREAT | os.O_WRONLY)
    try:
        os.posix_fallocate(fd, 0, max(size, 1))
    finally:
        os.close(fd)
    return ballast


def synthetic_articles(folder: Path, n: int) -> None:
    """`n` articles of their own (invented words, places and numbers), about four chunks each."""
    rnd = random.Random(13)
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]

    def word() -> str:
        return "".join(rnd.choice(syllables) for _ in range(rnd.randint(2, 4)))

    for i in range(n):
        town, body = word().title(), []
        for _ in range(24):
            body.append(f"The {word()} council of {town} approved {rnd.randint(2, 900)} million for the "
                        f"{word()} {word()} project on {rnd.choice(['Monday', 'Tuesday', 'Friday'])}, officials said.")
        (folder / f"synthetic-{i:02d}.txt").write_text(
            f"{town} council backs {word()} plan\n\n" + "\n\n".join(" ".join(body[j:j + 4]) for j in range(0, 24, 4)),
            encoding="utf-8")


def assert_answers(env: dict[str, str]) -> None:
    result = run_qabot("ask", "--json", QUESTION, env=env)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert not answer["refused"] and "Dan Oliver" in answer["answer"]
    assert answer["sources"][0]["doc_id"] == ANSWER_DOC


def test_a_full_disk_is_one_line_and_a_plain_ingest_recovers(tmp_path: Path, built_data_dir: Path) -> None:
    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS, corpus)
    with tmpfs(tmp_path / "device", 24) as device:
        shutil.copytree(built_data_dir, device / "data")  # the five articles, indexed
        env = {"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(device / "data")}

        # Chroma itself runs out of space (removing a document needs room for SQLite's journal).
        ballast = fill(device, 0)
        removed = sorted(corpus.iterdir())[0]
        removed.unlink()
        result = run_qabot("ingest", env=env)
        assert_one_line_error(result, 3, f"no space left on the device holding {device / 'data'}",
                              "free space and run `qabot ingest` again")
        ballast.unlink()

        # Ingest stops before a write the device cannot hold.
        synthetic_articles(corpus, 8)
        ballast = fill(device, 1_000_000)
        result = run_qabot("ingest", env=env)
        assert_one_line_error(result, 3, "no space left on the device holding", "MB needed to write",
                              "free space and run `qabot ingest` again")
        # Meanwhile questions are answered from the index as it is, saying once why it is not synced.
        result = run_qabot("ask", "--json", QUESTION, env=env)
        assert result.returncode == 0 and json.loads(result.stdout)["sources"][0]["doc_id"] == ANSWER_DOC
        assert result.stderr.count("no space left") == 1 and "answering from the index as it is" in result.stderr
        health = run_qabot("health", env=env, timeout=60)
        assert health.returncode == 0 and "8 of 12 corpus files not indexed" in health.stdout, health.stdout

        ballast.unlink()  # space freed: a plain ingest completes, nothing indexed before is lost
        result = run_qabot("ingest", "--json", env=env)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert (report["documents"], report["added"], report["removed"], report["unchanged"]) == (12, 8, 1, 4)
        assert_answers(env)


def _push_past_the_hnsw_save(chroma_dir: Path) -> Path:
    """Write 1,100 rows straight into the collection so that Chroma saves its HNSW files (it does every
    1,000 rows), and return the HNSW folder. The rows belong to no corpus file: a sync removes them."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    client = chromadb.PersistentClient(path=str(chroma_dir), settings=ChromaSettings(anonymized_telemetry=False))
    try:
        col = client.get_collection("qabot")
        rnd = random.Random(5)
        for g in range(11):
            ids = [f"filler-{g}.txt#{i}" for i in range(1, 101)]
            col.upsert(ids=ids, embeddings=[[rnd.random() for _ in range(384)] for _ in ids], documents=["x"] * 100,
                       metadatas=[{"doc_id": f"filler-{g}.txt", "chunk_index": i} for i in range(1, 101)])
    finally:
        client.close()
    (pickle,) = chroma_dir.glob("*/index_metadata.pickle")
    return pickle.parent


def test_unreadable_vector_files_are_rebuilt_by_a_plain_ingest(tmp_path: Path, built_data_dir: Path) -> None:
    shutil.copytree(built_data_dir, tmp_path / "data")
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(tmp_path / "data")}
    pickle = _push_past_the_hnsw_save(tmp_path / "data" / "chroma") / "index_metadata.pickle"
    pickle.write_bytes(b"")  # what the full tmpfs left

    health = run_qabot("health", env=env, timeout=60)
    assert health.returncode == 1 and "Traceback" not in health.stdout + health.stderr, health.stderr
    line = next(ln for ln in health.stdout.splitlines() if ln.startswith("FAIL  index"))
    assert "vector files" in line and "cannot be read" in line and "run `qabot ingest`" in line, line

    result = run_qabot("ingest", "--json", env=env)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr and "rebuilding collection 'qabot'" in result.stderr
    assert json.loads(result.stdout)["documents"] == 5
    assert_answers(env)


def test_rebuild_sets_a_damaged_index_aside_and_builds_anew(tmp_path: Path, built_data_dir: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(built_data_dir, data)
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)}
    with open(data / "chroma" / "chroma.sqlite3", "r+b") as db:
        db.truncate(100_000)

    for command in (["ingest"], ["ask", QUESTION]):
        result = run_qabot(*command, env=env)
        assert_one_line_error(result, 3, f"the index database {data / 'chroma' / 'chroma.sqlite3'} is damaged",
                              "run `qabot ingest --rebuild`")

    result = run_qabot("ingest", "--rebuild", env=env)
    assert result.returncode == 0, result.stderr
    (aside,) = data.glob("chroma.damaged-*")
    assert f"moved to {aside}" in result.stderr and (aside / "chroma.sqlite3").stat().st_size == 100_000
    assert_answers(env)
