"""The interactive terminal chat: a read-eval-print loop around `QAPipeline.ask()`."""

from __future__ import annotations

import signal
import threading

from rich.console import Console

from rag.conversation import CONVERSATION_TURNS
from rag.errors import QabotError
from rag.pipeline import QAPipeline
from rag.types import Answer, Turn

from .render import print_answer, print_sources, streaming

HELP = """Ask a question about the articles, or type a command:
  /sources  show the sources of the last answer
  /reset    forget the conversation (follow-ups start fresh)
  /help     this help
  /quit     leave (Ctrl-D works too)"""

PROMPT = "you> "


def run_chat(pipeline: QAPipeline, console: Console, history_size: int = CONVERSATION_TURNS) -> None:
    """Loop until /quit or end of input; Ctrl-C abandons the current question, not the chat."""
    try:
        import readline  # noqa: F401  (arrow keys and history for input())
    except ImportError:  # pragma: no cover - Windows without pyreadline
        pass
    if threading.current_thread() is threading.main_thread():
        # A shell without job control starts background commands with SIGINT ignored, and Python
        # keeps it so: Ctrl-C would then do nothing at all. The chat promises it abandons the line.
        signal.signal(signal.SIGINT, signal.default_int_handler)
    docs = pipeline.documents()
    console.print(f"[bold]qabot[/bold] · {len(docs)} articles indexed · answers by {pipeline.backend_name()} · /help for commands")
    pipeline.prepare_conversations()  # loaded while the user types the first question
    history: list[Turn] = []
    last: Answer | None = None
    while True:
        try:
            line = input(PROMPT)
        except EOFError:
            console.print()
            return
        except KeyboardInterrupt:
            console.print("\n[dim](Ctrl-C: type /quit or press Ctrl-D to leave)[/dim]")
            continue
        text = line.strip()
        if not text:
            continue
        command = text.lower()
        if command in ("/quit", "/exit", "/q"):
            return
        if command == "/help":
            console.print(HELP)
            continue
        if command == "/reset":
            history.clear()
            last = None
            console.print("[dim]Conversation reset.[/dim]")
            continue
        if command == "/sources":
            print_sources(console, last)
            continue
        if text.startswith("/"):
            console.print(f"[red]Unknown command {text.split()[0]}[/red]; /help lists them.")
            continue
        try:
            with streaming(console) as on_token:
                answer = pipeline.ask(text, history, on_token=on_token)
        except KeyboardInterrupt:
            console.print("[dim]cancelled[/dim]")
            continue
        except QabotError as exc:
            console.print(f"[red]{exc}[/red]")
            continue
        print_answer(console, answer)
        last = answer
        # Refused turns are kept too: a new topic the articles do not cover still ends the old one.
        history = (history + [Turn(text, answer.text)])[-history_size:]
