"""The writer lock names its holder so that a person can find it: its pid, and its host when that is not ours.

In Docker every container's main process is pid 1, so "pid 1: qabot discord" alone points at
nothing; a holder in another container (its hostname is the container id) or on another host is
named with that host. Lock files written by older versions (one line, no host) still read as before.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.lock import IndexLockedError, WriterLock

from .conftest import CORPUS, assert_one_line_error, run_qabot

HERE = socket.gethostname()


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


@contextlib.contextmanager
def _held_by(data: Path, record: str) -> Iterator[None]:
    """Hold `data`'s writer lock as another process would (its own open file), with `record` in the file."""
    data.mkdir(parents=True, exist_ok=True)
    fd = os.open(data / "index.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
        yield
    finally:
        os.close(fd)


def _message(data: Path) -> str:
    with pytest.raises(IndexLockedError) as caught:
        WriterLock(data).acquire()
    return str(caught.value)


def test_the_lock_file_records_pid_host_and_pid_namespace(tmp_path: Path) -> None:
    lock = WriterLock(tmp_path / "data")
    lock.acquire()
    try:
        lines = (tmp_path / "data" / "index.lock").read_text(encoding="utf-8").splitlines()
        assert lines[0].startswith(f"pid {os.getpid()}: "), lines  # what older versions wrote and read
        assert f"host: {HERE}" in lines[1:], lines
        if _pid_namespace():
            assert f"pidns: {_pid_namespace()}" in lines[1:], lines
    finally:
        lock.release()


@pytest.mark.parametrize(
    ("record", "shown"),
    [
        # written by an older version: no host, shown as it always was
        ("pid 4242: qabot discord\n", "pid 4242: qabot discord"),
        # this host (and pid namespace): the pid means something here, shown as before
        (f"pid 4242: qabot discord\nhost: {HERE}\n" + (f"pidns: {_pid_namespace()}\n" if _pid_namespace() else ""),
         "pid 4242: qabot discord"),
        # another container sharing the volume: its hostname is its id
        ("pid 1: qabot discord\nhost: 3f2a1b9c0d1e\npidns: pid:[4026532999]\n", "pid 1 on host 3f2a1b9c0d1e: qabot discord"),
        ("pid 1: qabot ingest\nhost: other-machine\n", "pid 1 on host other-machine: qabot ingest"),
    ],
)
def test_the_other_writer_is_named_with_its_host_when_that_is_not_this_one(tmp_path: Path, record: str,
                                                                            shown: str) -> None:
    data = tmp_path / "data"
    with _held_by(data, record):
        assert _message(data).startswith(f"another qabot process ({shown}) is writing the index in {data}; ")
        assert WriterLock(data).holder() == shown  # what `qabot health` shows ("held by ...")


@pytest.mark.skipif(not _pid_namespace(), reason="no /proc/self/ns/pid here")
def test_a_writer_in_another_pid_namespace_on_a_host_of_the_same_name_is_called_another_container(
        tmp_path: Path) -> None:  # e.g. two `docker run --network host` containers: same hostname, both pid 1
    data = tmp_path / "data"
    with _held_by(data, f"pid 1: qabot discord\nhost: {HERE}\npidns: pid:[1]\n"):
        assert WriterLock(data).holder() == f"pid 1 in another container on host {HERE}: qabot discord"


def test_a_damaged_lock_file_still_gives_a_one_line_message(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with _held_by(data, "\x1b[2Jpid 7\x07: qabot\nhost: \x1b]evil\nnot a field\n"):
        holder = WriterLock(data).holder()
    assert holder is not None and holder.isprintable() and "\n" not in holder
    with _held_by(data, ""):
        assert _message(data).startswith("another qabot process (unknown) is writing")


def test_qabot_ingest_names_a_writer_in_another_container(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)}
    with _held_by(data, "pid 1: qabot discord\nhost: 3f2a1b9c0d1e\n"):
        result = run_qabot("ingest", env=env, timeout=120)
    assert_one_line_error(result, 3, "another qabot process (pid 1 on host 3f2a1b9c0d1e: qabot discord) is writing "
                                     f"the index in {data}", "stop it first")
