"""Scores for a reader: SQuAD exact match and F1, no-answer accuracy, and the no-answer threshold.

The same decoding as at answer time (`rag.answer.reader`): a checkpoint is scored the way qabot will use it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.answer.reader import Span, Window, encode_pairs, spans_of
from rag.evaluate import token_f1 as f1
from rag.evaluate import normalize_answer

from .data import Example

#: Share of held-out answerable examples the threshold may refuse: qabot's budget for false refusals.
MAX_FALSE_REFUSALS = 0.03
#: How far a span may widen to hold the readings the model hesitates between (`best_span`'s `cover`:
#: 1 = the best span alone). The shipped value is the one of these that scores best on held-out articles;
#: values within COVER_TIE of the best score count as ties, won by the shorter lead.
COVER_GRID = (1.0, 0.6, 0.45, 0.3, 0.2, 0.1)
COVER_TIE = 0.005

Logits = Callable[[list[Window]], list[tuple[np.ndarray, np.ndarray]]]


def exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


def predict(logits: Logits, tokenizer: object, questions: Sequence[str], passages: Sequence[str], *,
            max_len: int, stride: int, max_question: int, cover: float = 1.0) -> list[Span | None]:
    """Each pair's best span, decoded exactly as `SpanReader.read` does."""
    windows = encode_pairs(tokenizer, questions, passages, max_len=max_len, stride=stride, max_question=max_question)
    return spans_of(windows, logits(windows), passages, cover)


def calibrate_cover(logits: Logits, tokenizer: object, examples: Sequence[Example], *, max_len: int, stride: int,
                    max_question: int) -> tuple[float, list[dict[str, float]]]:
    """The `cover` of COVER_GRID that makes the best answer lead on held-out answerable examples, and the table.

    An answer's lead should hold the answer (contains) and little else (F1); widening a span trades the
    second for the first, so the choice maximizes their sum. On the first shipped reader (1,572 held-out
    examples): contains 0.69 -> 0.80 and F1 0.70 -> 0.65 from 1.0 to 0.3; the sum is flat from 0.3 to 0.2.
    """
    answerable = [e for e in examples if e.answers]
    passages = [e.context for e in answerable]
    windows = encode_pairs(tokenizer, [e.question for e in answerable], passages, max_len=max_len, stride=stride,
                           max_question=max_question)
    computed = logits(windows)
    golds = [[a for a, _ in e.answers] for e in answerable]
    table = []
    for cover in COVER_GRID:
        spans = spans_of(windows, computed, passages, cover)
        texts = [s.text if s else "" for s in spans]
        table.append({
            "cover": cover,
            "contains": float(np.mean([any(normalize_answer(g) in normalize_answer(t) for g in gs)
                                       for t, gs in zip(texts, golds, strict=True)])),
            "f1": float(np.mean([max(f1(t, g) for g in gs) for t, gs in zip(texts, golds, strict=True)])),
            "mean_words": float(np.mean([len(t.split()) for t in texts])),
        })
    top = max(row["contains"] + row["f1"] for row in table)
    return max(row["cover"] for row in table if row["contains"] + row["f1"] >= top - COVER_TIE), table


def score_examples(spans: Sequence[Span | None], examples: Sequence[Example]) -> dict[str, float]:
    """EM/F1 on answerable examples (span taken as is), and the margin threshold for no-answer."""
    answerable = [(s, e) for s, e in zip(spans, examples, strict=True) if e.answers]
    negatives = [s for s, e in zip(spans, examples, strict=True) if not e.answers]
    em = np.mean([max(exact(s.text if s else "", a) for a, _ in e.answers) for s, e in answerable]) if answerable else 0.0
    fl = np.mean([max(f1(s.text if s else "", a) for a, _ in e.answers) for s, e in answerable]) if answerable else 0.0
    pos_margins = np.array([s.margin if s else -1e9 for s, _ in answerable])
    neg_margins = np.array([s.margin if s else -1e9 for s in negatives])
    threshold = float(np.quantile(pos_margins, MAX_FALSE_REFUSALS)) if pos_margins.size else 0.0
    return {
        "answerable": len(answerable), "no_answer": len(negatives),
        "exact_match": float(em), "f1": float(fl),
        "min_margin": threshold,
        "no_answer_refused": float(np.mean(neg_margins < threshold)) if neg_margins.size else 0.0,
        "answerable_refused": float(np.mean(pos_margins < threshold)) if pos_margins.size else 0.0,
    }


def gold_paragraph_set(eval_dir: Path) -> tuple[list[str], list[str], list[list[str]]]:
    """squad2-dev's answerable questions with the paragraph of their article that holds an answer."""
    questions, passages, golds = [], [], []
    for line in (eval_dir / "questions.jsonl").read_text().splitlines():
        q = json.loads(line)
        if q.get("unanswerable") or not q.get("gold_docs"):
            continue
        text = (eval_dir / "corpus" / f"{q['gold_docs'][0]}.txt").read_text()
        paragraphs = [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]
        found = next((p for p in paragraphs if any(a.lower() in p.lower() for a in q["answer_any"])), None)
        if found is None:
            continue
        questions.append(q["question"])
        passages.append(found)
        golds.append(q["answer_any"])
    return questions, passages, golds


def score_gold_paragraphs(spans: Sequence[Span | None], golds: Sequence[list[str]]) -> dict[str, float]:
    return {
        "questions": len(golds),
        "exact_match": float(np.mean([max(exact(s.text if s else "", g) for g in gs) for s, gs in zip(spans, golds)])),
        "f1": float(np.mean([max(f1(s.text if s else "", g) for g in gs) for s, gs in zip(spans, golds)])),
    }
