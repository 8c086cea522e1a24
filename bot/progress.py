"""Progress on a terminal: a bar for long ingests, a spinner while loading or answering."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn


@contextmanager
def spinner(console: Console, text: str) -> Iterator[None]:
    """A spinner saying `text`; log records meanwhile show as its progress, never written through it.

    The first question makes the int8 ONNX copy of the model (seconds, once): its "making the
    ONNX file" record becomes the spinner's text instead of a log line printed over the spinner
    and into the answer. Warnings are printed above the spinner.
    """
    with console.status(text, spinner="dots") as status, log_records_as_progress(console, status, text):
        yield


@contextmanager
def log_records_as_progress(console: Console, status: Any, text: str) -> Iterator[None]:
    """While it lasts, INFO records update `status` (anything with `update(markup)`); warnings print above."""
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [_SpinnerHandler(console, status, text)]
    try:
        yield
    finally:
        root.handlers = saved


class _SpinnerHandler(logging.Handler):
    def __init__(self, console: Console, status: Any, text: str) -> None:
        super().__init__()
        self.console, self.status, self.text = console, status, text

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = escape(record.getMessage())
            if record.levelno < logging.WARNING:
                self.status.update(f"{self.text} [dim]({message})[/dim]")
            else:
                self.console.print(f"[yellow]{record.levelname.lower()}:[/yellow] {message}")
        except Exception:  # a log record must never break the command it reports on
            self.handleError(record)


@contextmanager
def ingest_progress(enabled: bool = True) -> Iterator[Callable[[int, int], None] | None]:
    """Yield a `(done, total)` callback that drives a rich progress bar on stderr.

    Nothing is drawn when stderr is not a terminal (CI logs, pipes) or for tiny ingests.
    """
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = Progress(
        TextColumn("indexing"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("documents"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = None

    def update(done: int, total: int) -> None:
        nonlocal task
        if total < 20:  # a few seconds: no bar
            return
        if task is None:
            bar.start()
            task = bar.add_task("embed", total=total)
        bar.update(task, completed=done)

    try:
        yield update
    finally:
        if task is not None:
            bar.stop()
