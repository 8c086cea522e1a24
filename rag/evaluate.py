"""Score the pipeline on a question file (the format of shared/eval/dev_questions.jsonl).

Each line: {"id", "question", "gold_docs": [doc_id prefixes], "answer_any": [accepted strings]}
or {"id", "question", "unanswerable": true}. An answer is correct when it contains any accepted
string (case-insensitive); an unanswerable question must be refused.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import QabotError
from .pipeline import QAPipeline
from .quotes import verify_quote


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    gold_docs: tuple[str, ...] = ()
    answer_any: tuple[str, ...] = ()
    unanswerable: bool = False


@dataclass
class EvalReport:
    questions: int = 0
    answerable: int = 0
    unanswerable: int = 0
    hit_at_k: float = 0.0
    k: int = 3
    mrr: float = 0.0
    answer_correctness: float = 0.0
    refusal_rate: float = 0.0  # share of unanswerable questions refused
    false_refusals: int = 0  # answerable questions refused
    quote_verification_rate: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


def read_questions(path: Path) -> list[EvalQuestion]:
    """Parse a JSONL question file, saying which line is wrong if one is."""
    out = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise QabotError(f"cannot read {path}: {exc.strerror or exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            out.append(
                EvalQuestion(
                    id=str(row.get("id", number)),
                    question=row["question"],
                    gold_docs=tuple(row.get("gold_docs", ())),
                    answer_any=tuple(row.get("answer_any", ())),
                    unanswerable=bool(row.get("unanswerable", False)),
                )
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            raise QabotError(f"{path}:{number}: not a question object ({type(exc).__name__}: {exc})") from None
    if not out:
        raise QabotError(f"{path} holds no questions")
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def evaluate(pipeline: QAPipeline, questions: list[EvalQuestion], k: int = 3) -> EvalReport:
    report = EvalReport(questions=len(questions), k=k)
    hits = reciprocal = correct = refused_ok = 0
    quotes_total = quotes_ok = 0
    latencies: list[float] = []
    doc_text: dict[str, str] = {}
    for q in questions:
        answer = pipeline.ask(q.question)
        latencies.append(answer.timings_ms.get("total", 0.0))
        for source in answer.sources:
            quotes_total += 1
            if source.doc_id not in doc_text:
                doc_text[source.doc_id] = " ".join(c.text for c in pipeline.index.store.get_document(source.doc_id))
            quotes_ok += bool(source.quote) and verify_quote(source.quote, doc_text[source.doc_id])
        if q.unanswerable:
            report.unanswerable += 1
            refused_ok += answer.refused
            if not answer.refused:
                report.failures.append({"id": q.id, "why": "answered an unanswerable question", "answer": answer.text[:200]})
            continue
        report.answerable += 1
        ranks = [i for i, doc in enumerate(answer.retrieved, start=1) if any(doc.startswith(g) for g in q.gold_docs)]
        if ranks and ranks[0] <= k:
            hits += 1
        if ranks:
            reciprocal += 1.0 / ranks[0]
        is_correct = not answer.refused and any(a.lower() in answer.text.lower() for a in q.answer_any)
        correct += is_correct
        if answer.refused:
            report.false_refusals += 1
            report.failures.append({"id": q.id, "why": "refused an answerable question"})
        elif not is_correct:
            report.failures.append({"id": q.id, "why": "answer lacks every accepted string", "answer": answer.text[:200]})
    if report.answerable:
        report.hit_at_k = hits / report.answerable
        report.mrr = reciprocal / report.answerable
        report.answer_correctness = correct / report.answerable
    report.refusal_rate = refused_ok / report.unanswerable if report.unanswerable else 1.0
    report.quote_verification_rate = quotes_ok / quotes_total if quotes_total else 1.0
    report.latency_p50_ms = statistics.median(latencies) if latencies else 0.0
    report.latency_p95_ms = percentile(latencies, 95)
    return report

