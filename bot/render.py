"""How answers look in a terminal (rich), kept apart from the commands that produce them."""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from rag.answer.grounding import preview
from rag.types import Answer

from .progress import log_records_as_progress


def print_answer(console: Console, answer: Answer) -> None:
    """The answer (its **answer spans** in bold), any notice, then the numbered sources.

    A source's quote is printed under it only when the answer text does not show it already: the
    offline answer quotes its evidence in the text, an LLM's answer does not.
    """
    if answer.notice:
        console.print(f"[yellow]note:[/yellow] {escape(answer.notice)}")
    style = "italic" if answer.refused else ""
    console.print(Text.from_markup(markdown_bold(answer.text), style=style), soft_wrap=False)
    if answer.sources:
        console.print()
        console.print("[bold]Sources[/bold]")
    for s in answer.sources:
        where = " · ".join(x for x in (s.date, s.url or s.doc_id) if x)
        console.print(f"[bold cyan][{s.n}][/bold cyan] {escape(s.title)} [dim]({escape(where)})[/dim]")
        if s.quote and not answer.shows_quote(s):
            mark = "" if s.verified else " [red](unverified)[/red]"
            console.print(f"    [green]“{escape(s.quote)}”[/green]{mark}")


def markdown_bold(text: str) -> str:
    """Rich markup for text whose only Markdown is **bold** (the answer span in a quote); all else escaped."""
    pieces = re.split(r"\*\*([^*\n]+)\*\*", text)
    return "".join(f"[bold]{escape(p)}[/bold]" if i % 2 else escape(p) for i, p in enumerate(pieces))


@contextmanager
def streaming(console: Console) -> Iterator[Callable[[str], None]]:
    """A spinner until an LLM starts writing, then its text as it comes; erased when the block ends.

    Yields the `on_token` listener for `QAPipeline.ask` (called from a worker thread); the
    grounded answer is printed after the block, in place of the unchecked text.
    """
    parts: list[str] = []
    lock = threading.Lock()
    spinner = Spinner("dots", text=Text("thinking…", style="dim"))

    def view() -> Group | Spinner:
        with lock:
            text = preview("".join(parts))
        if not text:
            return spinner
        return Group(Text(text), Spinner("dots", text=Text("writing… sources and quotes are checked when it is done",
                                                         style="dim")))

    class _Status:  # log records (the first question's "making the int8 ONNX file…") become its text
        def update(self, markup: str) -> None:
            spinner.update(text=Text.from_markup(markup, style="dim"))

    with Live(console=console, transient=True, refresh_per_second=8, get_renderable=view), \
            log_records_as_progress(console, _Status(), "thinking…"):
        def on_token(delta: str) -> None:
            with lock:
                parts.append(delta)

        yield on_token


def print_sources(console: Console, answer: Answer | None) -> None:
    """The sources of the last answer, or why there are none."""
    if answer is None:
        console.print("[dim]No sources yet: ask a question first.[/dim]")
    elif answer.refused:
        console.print("[dim]No sources: the last question was not answered (the articles do not cover it).[/dim]")
    elif not answer.sources:
        console.print("[dim]The last answer has no sources.[/dim]")
    else:
        print_answer(console, Answer(answer.question, "", answer.sources))


def eval_table(report: dict) -> Table:
    """The scores of one eval report (rag.evaluate.EvalReport.to_dict())."""
    title = f"qabot eval: {report['name']}" if report.get("name") else "qabot eval"
    table = Table(title=title, show_header=True)
    table.add_column("metric")
    table.add_column("value", justify="right")
    rows = [
        ("questions (answerable / unanswerable)", f"{report['questions']} ({report['answerable']} / {report['unanswerable']})"),
        (f"source hit@{report['k']}", f"{report['hit_at_k']:.3f}"),
        ("MRR", f"{report['mrr']:.3f}"),
        ("answer correctness", f"{report['answer_correctness']:.3f}"),
        ("lead contains an accepted answer", f"{report['lead_contains']:.3f}"),
        ("lead F1 (SQuAD)", f"{report['lead_f1']:.3f}"),
        ("first sentence contains an accepted answer", f"{report['first_sentence_contains']:.3f}"),
        ("median lead words", f"{report['median_lead_words']:.1f}"),
        ("refusal rate (unanswerable)", f"{report['refusal_rate']:.3f}"),
        ("false refusals", f"{report['false_refusals']} ({report['false_refusal_rate']:.1%})"),
        ("quote verification rate", f"{report['quote_verification_rate']:.3f}"),
        ("latency p50 / p95 (ms)", f"{report['latency_p50_ms']:.0f} / {report['latency_p95_ms']:.0f}"),
    ]
    for use, count in sorted((report.get("llm_replies") or {}).items(), key=lambda kv: -kv[1]):
        rows.append((f"LLM replies: {use}", str(count)))
    for name, value in rows:
        table.add_row(name, value)
    return table


def tradeoff_table(report: dict, which: str = "evidence") -> Table:
    """Refusals against false refusals for each threshold (of the evidence, or of the reader's margin), the current one marked."""
    if which == "evidence":
        rows_key, title = "refusal_tradeoff", "refusal trade-off (evidence threshold)"
        caption = f"had QABOT_MIN_EVIDENCE been each threshold (now {report['min_evidence']}); from recorded evidence"
    else:
        rows_key, title = "span_tradeoff", "refusal trade-off (reader's answer-span margin)"
        caption = (f"had QABOT_MIN_SPAN_MARGIN been each threshold (now {report['min_span_margin']}); "
                   "from recorded margins, evidence threshold as set")
    table = Table(title=title, caption=caption, show_header=True)
    table.add_column("threshold", justify="right")
    table.add_column("unanswerable refused", justify="right")
    table.add_column("false refusals", justify="right")
    table.add_column("")
    # Neighbouring thresholds that change nothing share one row ("0.00–0.40"); --json keeps every row.
    runs: list[list[dict]] = []
    for row in report[rows_key]:
        last = runs[-1][-1] if runs else None
        same = last is not None and not (row["current"] or last["current"]) and all(
            row[key] == last[key] for key in ("unanswerable_refused", "false_refusals"))
        runs[-1].append(row) if same else runs.append([row])
    for run in runs:
        first, last = run[0], run[-1]
        span = f"{first['threshold']:.2f}" + (f"–{last['threshold']:.2f}" if len(run) > 1 else "")
        table.add_row(span, f"{first['unanswerable_refused']:.1%}",
                      f"{first['false_refusals']} ({first['false_refusal_rate']:.1%})", "← current" if first["current"] else "")
    return table
