"""The one exception type whose message is meant for the user, and the exit codes it maps to."""

from __future__ import annotations

#: The one exit-code scheme of every `qabot` command (listed by `qabot --help` and the README).
EXIT_CODES: dict[int, str] = {
    0: "success",
    1: "an error, a failed check or threshold, or (ingest) some files skipped",
    2: "invalid settings or usage",
    3: "the index cannot be used (server unreachable, another writer, damaged, or its disk is full)",
    130: "interrupted",
}


class QabotError(Exception):
    """A problem the user can fix: the message says what went wrong and what to do next.

    Edges (CLI, Discord bot) print it on one line without a traceback; anything
    else that escapes is a bug and is logged with its traceback.
    """

    exit_code = 1


class SettingsError(QabotError):
    """A setting is missing or invalid; exit code 2 like other usage errors."""

    exit_code = 2


class IndexMismatchError(QabotError):
    """The index on disk was built differently (another embedding model) and must be rebuilt."""

    exit_code = 2


class StoreUnavailableError(QabotError):
    """The vector store cannot be reached or opened (server down, folder locked)."""

    exit_code = 3


class DiskFullError(StoreUnavailableError):
    """The device holding the data folder has no room for the next write; nothing was half-written."""


class IndexDamagedError(StoreUnavailableError):
    """Chroma's files cannot be read: `vectors` (rebuilt from the corpus by the next sync) or `database`
    (`qabot ingest --rebuild` sets it aside and starts anew)."""

    def __init__(self, message: str, part: str) -> None:
        super().__init__(message)
        self.part = part
