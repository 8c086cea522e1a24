"""What every `qabot` command module shares: the exit codes, one-line errors, the settings decorator.

`bot/cli.py` builds the command group from the modules that define commands (`bot/health.py`,
`bot/discord_cli.py`); they take their helpers from here, so imports run one way:
cli -> health/discord_cli -> cli_common.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, NoReturn

import click

from rag.errors import EXIT_CODES, QabotError
from rag.settings import Settings

#: `ingest` exits 1 when some files were skipped (the rest is ingested), like a failed check.
EXIT_SKIPPED = 1

#: The exit codes as `--help` and the README list them (rag/errors.py maps errors to them).
EXIT_CODES_HELP = "Exit codes: " + "; ".join(f"{code} {meaning}" for code, meaning in EXIT_CODES.items()) + "."

pass_settings = click.make_pass_decorator(Settings)


def fail(message: str, code: int = 1) -> NoReturn:
    """Print `qabot: error: <message>` on one line of stderr and exit with `code`."""
    click.echo(f"qabot: error: {message}", err=True)
    sys.exit(code)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a QabotError into one line on stderr and its exit code; Ctrl-C into exit 130."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QabotError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper
