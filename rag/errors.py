"""The one exception type whose message is meant for the user."""

from __future__ import annotations


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
