"""One writer at a time for the embedded index: an advisory lock file in the data folder.

Chroma's embedded `PersistentClient` is not safe for two processes writing one folder
(measured here: two concurrent writers left an index on which every later query hung),
while processes that only read are fine next to one writer. So only writing takes the lock:

- `qabot ingest` and the Discord bot are writers: they take the lock when they open the
  index and keep it until they exit (the bot syncs at start and on /reindex, and its keyword
  index must not go stale under it). A second writer fails at once with `IndexLockedError`.
- `qabot ask`/`chat` sync only when the lock is free, holding it just for that sync; when
  another process holds it they answer from the index as it is and say so once.
- With a Chroma server (CHROMA_HOST) there is no lock: the server serialises writes.

The lock is `fcntl.flock` on `<data>/index.lock`, so the kernel releases it when the holder
exits or is killed; a stale file never blocks anyone. Within one process every opener of
the same folder shares one lock (two `flock`s from one process on one file would conflict).

The holder writes who it is into the file: a first line "pid 123: qabot discord" (all that
older versions wrote, and all they read), then "host: <name>" and "pidns: <id>". A pid means
nothing in another container (in Docker every container's main process is pid 1), so when
the holder ran on another host or container (the hostname of a container is its id) the
message names it: "pid 1 on host 3f2a1b9c0d1e: qabot discord".
"""

from __future__ import annotations

import fcntl
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from .errors import SettingsError, StoreUnavailableError
from .settings import Settings

LOCK_FILENAME = "index.lock"


class IndexLockedError(StoreUnavailableError):
    """Another process is writing the embedded index (exit code 3, like an unreachable store)."""


@dataclass
class _Held:
    fd: int
    users: int


_HELD: dict[str, _Held] = {}  # lock file (resolved) -> this process's open, locked descriptor
_HELD_GUARD = threading.Lock()


class WriterLock:
    """The writer lock of one data folder; `acquire()` fails fast, `release()` undoes one acquire."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_FILENAME
        self._mine = 0  # acquires by this object not yet released

    @classmethod
    def for_settings(cls, settings: Settings) -> WriterLock | None:
        """The lock guarding the settings' index, or None when a Chroma server holds it."""
        return None if settings.server_mode else cls(settings.data_dir)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock."""
        return self._mine > 0

    def try_acquire(self) -> bool:
        """Take the lock if no other process holds it; never waits."""
        key = self._key()
        with _HELD_GUARD:
            held = _HELD.get(key)
            if held is None:
                fd = self._open()
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    os.close(fd)
                    return False
                except OSError as exc:  # e.g. a file system without locks
                    os.close(fd)
                    raise StoreUnavailableError(
                        f"cannot lock {self.path} ({exc.strerror or exc}); put QABOT_DATA_DIR on a local disk "
                        "or use a Chroma server (CHROMA_HOST)"
                    ) from None
                _write_owner(fd)
                held = _HELD[key] = _Held(fd, 0)
            held.users += 1
        self._mine += 1
        return True

    def acquire(self) -> None:
        """Take the lock or raise IndexLockedError naming the process that has it."""
        if not self.try_acquire():
            raise IndexLockedError(
                f"another qabot process ({self.owner() or 'unknown'}) is writing the index in {self.data_dir}; "
                "stop it first, or run a Chroma server and set CHROMA_HOST so several processes can share the index"
            )

    def release(self) -> None:
        """Undo one successful acquire; the lock is freed when the last one in this process is undone."""
        if self._mine == 0:
            return
        self._mine -= 1
        with _HELD_GUARD:
            held = _HELD.get(self._key())
            if held is None:
                return
            held.users -= 1
            if held.users == 0:
                del _HELD[self._key()]
                os.close(held.fd)  # closing the descriptor releases the flock

    def release_all(self) -> None:
        """Undo every acquire this object made (the lock stays with other holders in this process)."""
        while self._mine:
            self.release()

    def holder(self) -> str | None:
        """Who holds the lock now ("pid 123: qabot discord"), or None when nobody does; never takes it."""
        with _HELD_GUARD:
            if self._key() in _HELD:
                return f"pid {os.getpid()} (this process)"
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)  # granted only while no writer holds it
        except BlockingIOError:
            return self.owner() or "another process"
        finally:
            os.close(fd)
        return None

    def owner(self) -> str:
        """Who holds the lock, as its holder wrote it ("pid 123: qabot discord"), or "".

        A holder on another host or in another container is named with its host
        ("pid 1 on host 3f2a1b9c0d1e: qabot discord"); a file written by an older version has no
        host and reads as before.
        """
        try:
            lines = self.path.read_text(encoding="utf-8", errors="replace").strip().splitlines()[:8]
        except OSError:
            return ""
        if not lines:
            return ""
        first = _printable(lines[0])
        fields = dict(line.partition(": ")[::2] for line in lines[1:])
        host, pidns = _printable(fields.get("host", "")), fields.get("pidns", "").strip()
        here_host, here_pidns = _whereabouts()
        elsewhere = (host and host != here_host) or (pidns and here_pidns and pidns != here_pidns)
        pid, sep, command = first.partition(": ")
        if not (elsewhere and host and sep and pid.startswith("pid ")):
            return first
        where = f"on host {host}" if host != here_host else f"in another container on host {host}"
        return f"{pid} {where}: {command}"[:200]

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()

    # -- helpers --------------------------------------------------------------------------------
    def _key(self) -> str:
        return os.path.realpath(self.path)

    def _open(self) -> int:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise SettingsError(
                f"QABOT_DATA_DIR={self.data_dir}: cannot write there ({exc.strerror or exc}); choose a writable folder"
            ) from None


def _whereabouts() -> tuple[str, str]:
    """This process's host name (a container's is its id) and PID namespace ("" where unknown)."""
    try:
        pidns = os.readlink("/proc/self/ns/pid")  # Linux: "pid:[4026531836]", shared by one container's processes
    except OSError:
        pidns = ""
    return _printable(socket.gethostname()), pidns


def _printable(text: str) -> str:
    """`text` on one line without control characters, at most 200 characters (it is shown to users)."""
    return "".join(ch for ch in text if ch.isprintable()).strip()[:200]


def _write_owner(fd: int) -> None:
    """Record who holds the lock, for the message another process shows (best effort)."""
    argv = sys.argv if sys.argv and sys.argv[0] not in ("", "-c") else ["python"]
    # the program and its first plain word ("qabot ingest"), never a question or a path
    command = " ".join([Path(argv[0]).name, *[a for a in argv[1:] if a.isidentifier()][:1]])
    host, pidns = _whereabouts()
    # the first line is what older versions wrote and read; the others name where that pid lives
    record = f"pid {os.getpid()}: {command}\nhost: {host}\n" + (f"pidns: {pidns}\n" if pidns else "")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode(), 0)
    except OSError:
        pass
