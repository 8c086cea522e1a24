"""Whether to answer: the one place that decides, from the evidence and what the reader found.

Two signals, each a reason to refuse on its own:

- the evidence (evidence.py): the best sentences do not hold the question's rare words, names and
  numbers, or are unrelated in meaning — the articles are about something else;
- the reader (reading.py): for a question whose answer is a span (a name, a number, a date, a
  phrase), the reader found none in the best sentences — the articles are about the topic but do not
  say the thing asked ("What is Huawei's annual revenue?" over articles that never give it).

The pipeline asks this once per question, before any answerer runs, so the offline answerer and
the LLM answerers refuse the same questions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .question import Question
from .reading import Reading

#: Question kinds whose answer is a span the reader can find; for the others (why, how, yes/no,
#: comparisons, summaries, bylines) the answer is a sentence and only the evidence decides.
SPAN_KINDS = frozenset({"factoid", "list", "define"})


@dataclass(frozen=True)
class Verdict:
    """The decision, with the two scores behind it (kept on the answer for `qabot eval`)."""

    answer: bool
    evidence: float
    margin: float | None  # the reader's best span margin; None when the reader was not asked
    reason: str = ""  # why it refuses: "evidence" or "no answer span"


def judge(question: Question, evidence: float, reading: Reading, *, min_evidence: float,
          min_margin: float | None) -> Verdict:
    """Answer or refuse. `min_margin` None: the reader's own calibrated threshold (reader.json)."""
    asked = question.kind in SPAN_KINDS and not reading.unavailable and reading.best is not None
    margin = reading.best.margin if asked and reading.best is not None else None
    if evidence < min_evidence:
        return Verdict(False, evidence, margin, "evidence")
    threshold = reading.min_margin if min_margin is None else min_margin
    if margin is not None and margin < threshold:
        return Verdict(False, evidence, margin, "no answer span")
    return Verdict(True, evidence, margin)
