"""Score the pipeline on a question file (the format of tests/data/dev_questions.jsonl).

Each line: {"id", "question", "gold_docs": [doc_id prefixes], "answer_any": [accepted strings]}
or {"id", "question", "unanswerable": true}. An answer is correct when it contains any accepted
string (case-insensitive); an unanswerable question must be refused.

Beside correctness, the report says how the answer reads: whether its lead (the text before the
first `[n]` citation) and its first sentence already hold an accepted answer, and how long the lead
is. The held-out measurement judges answers by their first sentence and their length, so a correct
answer buried in a long paragraph scores low there even when `answer_correctness` is 1.0.

An "eval set" is a folder with its own `corpus/` and `questions.jsonl` (tests/data/squad2-dev):
`set_settings()` gives it its own collection so it never mixes with the user's index.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
import string
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import QabotError
from .pipeline import QAPipeline
from .quotes import verify_quote
from .settings import Settings
from .text import split_sentences

#: Thresholds of the refusal trade-off table: 0.00, 0.05, ... 1.00 (evidence is a 0..1 score).
TRADEOFF_THRESHOLDS = tuple(round(i * 0.05, 2) for i in range(21))
#: An `[n]` citation as the answerers write them.
_CITATION = re.compile(r"\[\d+\]")
_PUNCTUATION = frozenset(string.punctuation)
#: What an eval set folder holds.
SET_QUESTIONS = "questions.jsonl"
SET_CORPUS = "corpus"


@dataclass(frozen=True)
class EvalQuestion:
    id: str
    question: str
    gold_docs: tuple[str, ...] = ()
    answer_any: tuple[str, ...] = ()
    unanswerable: bool = False


@dataclass
class EvalReport:
    name: str = ""  # the question file or eval set measured
    questions: int = 0
    answerable: int = 0
    unanswerable: int = 0
    hit_at_k: float = 0.0
    k: int = 3
    mrr: float = 0.0
    answer_correctness: float = 0.0
    #: share of answerable questions whose lead (text before the first [n]) holds an accepted answer
    lead_contains: float = 0.0
    #: SQuAD's token F1 of the lead against the best accepted answer, averaged over answerable questions
    lead_f1: float = 0.0
    #: share of answerable questions whose first sentence holds an accepted answer
    first_sentence_contains: float = 0.0
    median_lead_words: float = 0.0  # over answered answerable questions
    refusal_rate: float = 0.0  # share of unanswerable questions refused
    false_refusals: int = 0  # answerable questions refused
    false_refusal_rate: float = 0.0  # the same as a share of the answerable questions
    quote_verification_rate: float = 0.0
    latency_p50_ms: float = 0.0
    latency_p95_ms: float = 0.0
    min_evidence: float = 0.0  # the pipeline's refusal threshold on Answer.evidence (QABOT_MIN_EVIDENCE)
    #: rows {threshold, unanswerable_refused, false_refusals, false_refusal_rate, current}: see refusal_tradeoff()
    refusal_tradeoff: list[dict[str, Any]] = field(default_factory=list)
    min_span_margin: float = 0.0  # the reader's refusal threshold on Answer.margin (QABOT_MIN_SPAN_MARGIN)
    #: the same table over the reader's margin, the evidence threshold as it is: see span_tradeoff()
    span_tradeoff: list[dict[str, Any]] = field(default_factory=list)
    #: With an LLM answerer: what became of its replies to the questions it was asked ("as written",
    #: "attributed", "fallback: <reason>"; see Answer.llm_use), counted. Empty offline.
    llm_replies: dict[str, int] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in asdict(self).items()}


@dataclass(frozen=True)
class Outcome:
    """What the trade-off needs of one answer: its question's kind, whether it was refused, its evidence."""

    unanswerable: bool
    refused: bool
    evidence: float
    margin: float | None = None  # the reader's margin where it decides (span questions), else None


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


def set_settings(settings: Settings, folder: Path) -> Settings:
    """The settings that evaluate the eval set in `folder` on its own corpus, in a collection of its own.

    The collection is named after the folder (and its absolute path, so two sets both called `dev`
    stay apart); it lives in the configured data folder or Chroma server and is synced, not rebuilt,
    on the next run.
    """
    corpus, questions = folder / SET_CORPUS, folder / SET_QUESTIONS
    if not corpus.is_dir() or not questions.is_file():
        raise QabotError(f"{folder} is not an eval set: it needs a {SET_CORPUS}/ folder and a {SET_QUESTIONS} file")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", folder.resolve().name).strip("-._")[:40] or "set"
    digest = hashlib.sha1(str(folder.resolve()).encode("utf-8")).hexdigest()[:8]
    return settings.replace(corpus_dir=corpus, collection=f"{settings.collection}-eval-{slug}-{digest}")


# -- how an answer reads ---------------------------------------------------------------------------
def answer_lead(text: str) -> str:
    """The answer text before its first `[n]` citation (all of it when it cites nothing)."""
    match = _CITATION.search(text)
    return (text[: match.start()] if match else text).strip()


def first_sentence(text: str) -> str:
    """The answer's first sentence: up to its first sentence end (rag.text's splitter) or newline."""
    line = text.strip().split("\n", 1)[0]
    spans = split_sentences(line)
    return line[spans[0][0] : spans[0][1]] if spans else ""


def word_count(text: str) -> int:
    """Words as a reader counts them: whitespace-separated tokens holding a letter or digit."""
    return sum(any(ch.isalnum() for ch in token) for token in text.split())


def contains_any(text: str, accepted: Sequence[str]) -> bool:
    """Whether `text` holds any accepted answer, case-insensitively."""
    lowered = text.lower()
    return any(a.lower() in lowered for a in accepted)


def refusal_tradeoff(
    outcomes: Sequence[Outcome], current: float, thresholds: Sequence[float] = TRADEOFF_THRESHOLDS
) -> list[dict[str, Any]]:
    """Refusals of unanswerable questions against false refusals, had the evidence threshold been each value.

    At threshold t an answer counts as refused when its evidence is under t, or when it was refused for
    another reason than the threshold (refused although its evidence cleared `current`); no question is
    asked again. The row of the current threshold is marked, and added to the grid when it is not on it.
    """
    def refused_at(o: Outcome, t: float) -> bool:
        by_threshold = o.evidence < current
        return o.evidence < t or (o.refused and not by_threshold)

    return _tradeoff_rows(outcomes, current, thresholds, refused_at)


def _tradeoff_rows(outcomes: Sequence[Outcome], current: float, thresholds: Sequence[float],
                   refused_at: Callable[[Outcome, float], bool]) -> list[dict[str, Any]]:
    """One row per threshold (the current one added and marked): unanswerable refused, false refusals."""
    grid = sorted(set(thresholds) | {round(current, 4)})
    unanswerable = [o for o in outcomes if o.unanswerable]
    answerable = [o for o in outcomes if not o.unanswerable]
    rows = []
    for t in grid:
        refused_ok = sum(refused_at(o, t) for o in unanswerable)
        wrongly = sum(refused_at(o, t) for o in answerable)
        rows.append({
            "threshold": t,
            "unanswerable_refused": round(refused_ok / len(unanswerable), 4) if unanswerable else 1.0,
            "false_refusals": wrongly,
            "false_refusal_rate": round(wrongly / len(answerable), 4) if answerable else 0.0,
            "current": t == round(current, 4),
        })
    return rows


#: Margins of the reader's trade-off table (logits).
SPAN_THRESHOLDS = tuple(float(t) for t in range(-8, 9))


def span_tradeoff(outcomes: Sequence[Outcome], current: float, min_evidence: float,
                  thresholds: Sequence[float] = SPAN_THRESHOLDS) -> list[dict[str, Any]]:
    """Like `refusal_tradeoff`, over the reader's margin (QABOT_MIN_SPAN_MARGIN) with the evidence threshold fixed."""

    def gated(o: Outcome, t: float) -> bool:
        return o.evidence >= min_evidence and o.margin is not None and o.margin < t

    def refused_at(o: Outcome, t: float) -> bool:
        return gated(o, t) or (o.refused and not gated(o, current))

    return _tradeoff_rows(outcomes, current, thresholds, refused_at)


def normalize_answer(text: str) -> str:
    """SQuAD's answer normalization: lower case, no punctuation, no articles, single spaces."""
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(re.sub(r"\b(a|an|the)\b", " ", text).split())


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 between a predicted and a gold answer (after normalize_answer)."""
    pred, ref = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not ref:
        return float(pred == ref)
    same = sum((Counter(pred) & Counter(ref)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(ref)
    return 2 * precision * recall / (precision + recall)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def evaluate(pipeline: QAPipeline, questions: list[EvalQuestion], k: int = 3, name: str = "") -> EvalReport:
    """Ask every question once and score retrieval, answers, how they read, refusals and quotes."""
    report = EvalReport(name=name, questions=len(questions), k=k)
    report.min_evidence = pipeline.settings.min_evidence
    hits = reciprocal = correct = refused_ok = leads_ok = firsts_ok = 0
    lead_f1 = 0.0
    quotes_total = quotes_ok = 0
    latencies: list[float] = []
    lead_lengths: list[int] = []
    outcomes: list[Outcome] = []
    doc_text: dict[str, str] = {}
    for q in questions:
        answer = pipeline.ask(q.question)
        latencies.append(answer.timings_ms.get("total", 0.0))
        if answer.llm_use:
            report.llm_replies[answer.llm_use] = report.llm_replies.get(answer.llm_use, 0) + 1
        outcomes.append(Outcome(q.unanswerable, answer.refused, answer.evidence, answer.margin))
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
        if answer.refused:
            report.false_refusals += 1
            report.failures.append({"id": q.id, "why": "refused an answerable question"})
            continue
        is_correct = contains_any(answer.text, q.answer_any)
        correct += is_correct
        lead = answer_lead(answer.text)
        leads_ok += contains_any(lead, q.answer_any)
        lead_f1 += max((token_f1(lead, a) for a in q.answer_any), default=0.0)
        firsts_ok += contains_any(first_sentence(answer.text), q.answer_any)
        lead_lengths.append(word_count(lead))
        if not is_correct:
            report.failures.append({"id": q.id, "why": "answer lacks every accepted string", "answer": answer.text[:200]})
    if report.answerable:
        report.hit_at_k = hits / report.answerable
        report.mrr = reciprocal / report.answerable
        report.answer_correctness = correct / report.answerable
        report.lead_contains = leads_ok / report.answerable
        report.lead_f1 = lead_f1 / report.answerable
        report.first_sentence_contains = firsts_ok / report.answerable
        report.false_refusal_rate = report.false_refusals / report.answerable
    report.median_lead_words = float(statistics.median(lead_lengths)) if lead_lengths else 0.0
    report.refusal_rate = refused_ok / report.unanswerable if report.unanswerable else 1.0
    report.quote_verification_rate = quotes_ok / quotes_total if quotes_total else 1.0
    report.latency_p50_ms = statistics.median(latencies) if latencies else 0.0
    report.latency_p95_ms = percentile(latencies, 95)
    report.refusal_tradeoff = refusal_tradeoff(outcomes, report.min_evidence)
    report.min_span_margin = pipeline.settings.min_span_margin
    report.span_tradeoff = span_tradeoff(outcomes, report.min_span_margin, report.min_evidence)
    return report
