"""How answers look in a terminal (rich), kept apart from the commands that produce them."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from rag.types import Answer


def print_answer(console: Console, answer: Answer) -> None:
    """The answer, any notice, then numbered sources with their quotes."""
    if answer.notice:
        console.print(f"[yellow]note:[/yellow] {escape(answer.notice)}")
    style = "italic" if answer.refused else ""
    console.print(escape(answer.text), style=style, soft_wrap=False)
    if answer.sources:
        console.print()
        console.print("[bold]Sources[/bold]")
    for s in answer.sources:
        where = " · ".join(x for x in (s.date, s.url or s.doc_id) if x)
        console.print(f"[bold cyan][{s.n}][/bold cyan] {escape(s.title)} [dim]({escape(where)})[/dim]")
        if s.quote:
            mark = "" if s.verified else " [red](unverified)[/red]"
            console.print(f"    [green]“{escape(s.quote)}”[/green]{mark}")


def print_sources(console: Console, answer: Answer | None) -> None:
    if answer is None or not answer.sources:
        console.print("[dim]No sources yet: ask a question first.[/dim]")
        return
    print_answer(console, Answer(answer.question, "", answer.sources))


def eval_table(report: dict) -> Table:
    table = Table(title="qabot eval", show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("questions (answerable / unanswerable)", f"{report['questions']} ({report['answerable']} / {report['unanswerable']})"),
        (f"source hit@{report['k']}", f"{report['hit_at_k']:.3f}"),
        ("MRR", f"{report['mrr']:.3f}"),
        ("answer correctness", f"{report['answer_correctness']:.3f}"),
        ("refusal rate (unanswerable)", f"{report['refusal_rate']:.3f}"),
        ("false refusals", str(report["false_refusals"])),
        ("quote verification rate", f"{report['quote_verification_rate']:.3f}"),
        ("latency p50 / p95 (ms)", f"{report['latency_p50_ms']:.0f} / {report['latency_p95_ms']:.0f}"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    return table
