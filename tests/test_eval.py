"""`qabot eval`: how answers read (lead, first sentence, length), the refusal trade-off, eval sets."""

from __future__ import annotations

import json
import re
import shutil
import statistics
from pathlib import Path

import pytest

from rag.embed import Embedder
from rag.evaluate import (
    TRADEOFF_THRESHOLDS,
    Outcome,
    answer_lead,
    contains_any,
    first_sentence,
    refusal_tradeoff,
    set_settings,
    word_count,
)

from .conftest import (
    CORPUS,
    DEV_QUESTIONS,
    assert_one_line_error,
    make_settings,
    part_of_squad2_dev,
    run_qabot,
    squad2_dev_questions,
)

QUESTION = "Who signed the US-Poland 5G deal?"
UNANSWERABLE = "How many moons does Jupiter have?"


# -- the metric functions, on answers whose text we write ------------------------------------------
def test_the_lead_is_the_text_before_the_first_citation() -> None:
    assert answer_lead("Mike Pence [1] signed it in Warsaw [2].") == "Mike Pence"
    assert answer_lead("Pence signed it [2], then Morawiecki [1].") == "Pence signed it"
    assert answer_lead("No citation at all.") == "No citation at all."
    assert answer_lead("[1] Everything is after the citation.") == ""
    assert answer_lead("In [sic] brackets, not a citation [3]") == "In [sic] brackets, not a citation"


def test_the_first_sentence_ends_at_a_sentence_end_or_a_newline() -> None:
    assert first_sentence("Pence signed it. Morawiecki too [1].") == "Pence signed it."
    assert first_sentence("Warsaw\nThe deal was signed there [1].") == "Warsaw"
    assert first_sentence("U.S. Vice President Mike Pence signed it. Then [1]") == "U.S. Vice President Mike Pence signed it."
    assert first_sentence("  Just one sentence without an end") == "Just one sentence without an end"
    assert first_sentence("") == ""


def test_words_and_accepted_answers_are_counted_as_a_reader_would() -> None:
    assert word_count("WARSAW – The US-Poland deal , signed 2019") == 6  # the dash and comma are no words
    assert word_count("") == 0
    assert contains_any("Mike PENCE signed", ["pence"]) and contains_any("x", ["y", "X"])
    assert not contains_any("Morawiecki", ["Pence"]) and not contains_any("anything", [])


def test_the_tradeoff_counts_refusals_per_threshold_from_the_recorded_evidence() -> None:
    outcomes = [
        Outcome(unanswerable=True, refused=True, evidence=0.1),  # refused by the threshold (0.3)
        Outcome(unanswerable=True, refused=False, evidence=0.5),
        Outcome(unanswerable=True, refused=True, evidence=0.9),  # refused for another reason: stays refused
        Outcome(unanswerable=False, refused=False, evidence=0.35),
        Outcome(unanswerable=False, refused=False, evidence=0.8),
        Outcome(unanswerable=False, refused=True, evidence=0.2),  # a false refusal by the threshold
        Outcome(unanswerable=False, refused=False, evidence=1.0),
    ]
    rows = refusal_tradeoff(outcomes, current=0.3)
    by_threshold = {row["threshold"]: row for row in rows}
    assert [row["threshold"] for row in rows] == list(TRADEOFF_THRESHOLDS)  # 0.3 is on the grid
    assert [row["threshold"] for row in rows if row["current"]] == [0.3]
    # at the current threshold the table reproduces what the pipeline did
    assert by_threshold[0.3] == {"threshold": 0.3, "unanswerable_refused": round(2 / 3, 4), "false_refusals": 1,
                                 "false_refusal_rate": 0.25, "current": True}
    assert (by_threshold[0.0]["unanswerable_refused"], by_threshold[0.0]["false_refusals"]) == (round(1 / 3, 4), 0)
    assert (by_threshold[0.4]["unanswerable_refused"], by_threshold[0.4]["false_refusals"]) == (round(2 / 3, 4), 2)
    assert (by_threshold[0.55]["unanswerable_refused"], by_threshold[0.55]["false_refusals"]) == (1.0, 2)
    assert (by_threshold[1.0]["unanswerable_refused"], by_threshold[1.0]["false_refusals"]) == (1.0, 3)
    assert_monotone(rows)
    # a threshold off the grid gets its own row
    off_grid = refusal_tradeoff(outcomes, current=0.33)
    assert len(off_grid) == len(TRADEOFF_THRESHOLDS) + 1
    assert [row["threshold"] for row in off_grid if row["current"]] == [0.33]


def assert_monotone(rows: list[dict]) -> None:
    """A higher evidence threshold never refuses fewer questions of either kind."""
    thresholds = [row["threshold"] for row in rows]
    assert thresholds == sorted(thresholds)
    for lower, higher in zip(rows, rows[1:]):
        assert higher["unanswerable_refused"] >= lower["unanswerable_refused"], (lower, higher)
        assert higher["false_refusals"] >= lower["false_refusals"], (lower, higher)


# -- through the CLI, on a question file whose accepted answers are chosen from the real answer -----
def _lead(text: str) -> str:
    return re.split(r"\[\d+\]", text, maxsplit=1)[0]


def test_eval_scores_leads_first_sentences_and_refusals_of_a_hand_made_file(built_data_dir: Path, tmp_path: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir)}
    asked = run_qabot("ask", "--json", input=f"{QUESTION}\n{UNANSWERABLE}\n", env=env)
    assert asked.returncode == 0, asked.stderr
    answer, refused = (json.loads(line) for line in asked.stdout.splitlines())
    assert not answer["refused"] and refused["refused"]
    text = answer["answer"]
    lead, rest = _lead(text), re.split(r"\[\d+\]", text, maxsplit=1)[1]
    opening = lead.split()[0]  # in the lead and in the first sentence
    later = [w for w in re.findall(r"[A-Za-z]{4,}", rest)
             if w.lower() not in lead.lower() and w.lower() not in first_sentence(text).lower()]
    assert later, f"the answer has no word after its first citation that the lead lacks: {text!r}"
    rows = [
        {"id": "lead", "question": QUESTION, "gold_docs": ["000"], "answer_any": [opening]},
        {"id": "after-citation", "question": QUESTION, "gold_docs": ["000"], "answer_any": [later[0]]},
        {"id": "nowhere", "question": QUESTION, "gold_docs": ["000"], "answer_any": ["xyzzy plugh"]},
        {"id": "jupiter", "question": UNANSWERABLE, "unanswerable": True},
    ]
    questions = tmp_path / "hand_made.jsonl"
    questions.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    result = run_qabot("eval", "--questions", str(questions), "--json", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["name"] == str(questions)
    assert (report["answerable"], report["unanswerable"]) == (3, 1)
    assert report["answer_correctness"] == pytest.approx(2 / 3, abs=1e-4)
    assert report["lead_contains"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["first_sentence_contains"] == pytest.approx(1 / 3, abs=1e-4)
    assert report["median_lead_words"] == statistics.median([word_count(lead)] * 3) > 0
    assert (report["refusal_rate"], report["false_refusals"], report["false_refusal_rate"]) == (1.0, 0, 0.0)
    assert {f["id"] for f in report["failures"]} == {"nowhere"}
    for key in ("hit_at_k", "mrr", "quote_verification_rate", "latency_p50_ms", "latency_p95_ms", "k"):
        assert key in report  # today's numbers stay
    tradeoff = report["refusal_tradeoff"]
    assert_monotone(tradeoff)
    assert {row["threshold"] for row in tradeoff} >= set(TRADEOFF_THRESHOLDS)
    # the row of the configured threshold is what happened
    assert report["min_evidence"] == make_settings(CORPUS, built_data_dir).min_evidence  # QABOT_MIN_EVIDENCE
    (today,) = (row for row in tradeoff if row["current"])
    assert (today["unanswerable_refused"], today["false_refusals"]) == (report["refusal_rate"], report["false_refusals"])

    table = run_qabot("eval", "--questions", str(questions), env=env)
    assert table.returncode == 0, table.stderr
    for label in ("lead contains an accepted answer", "first sentence contains an accepted answer",
                  "median lead words", "refusal trade-off", "unanswerable refused", "✗ nowhere"):
        assert label in table.stdout, table.stdout


def test_lead_thresholds_fail_the_run_and_name_what_was_missed(built_data_dir: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir)}
    result = run_qabot("eval", "--questions", str(DEV_QUESTIONS), "--json", "--min-lead-contains", "1.01",
                       "--max-median-lead-words", "0", "--min-correctness", "0", env=env)
    assert_one_line_error(result, 1, "below threshold: lead contains, median lead words")
    assert "correctness" not in result.stderr
    measured = json.loads(result.stdout)  # the report is still printed
    at_the_limits = run_qabot("eval", "--questions", str(DEV_QUESTIONS), "--json",
                              "--min-lead-contains", str(measured["lead_contains"]),
                              "--max-median-lead-words", str(measured["median_lead_words"]), env=env)
    assert at_the_limits.returncode == 0, at_the_limits.stderr  # a value equal to its limit passes


def test_eval_refuses_a_folder_that_is_not_an_eval_set_and_a_call_without_questions(tmp_path: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(tmp_path / "data")}
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "questions.jsonl").write_text('{"question": "q"}\n', encoding="utf-8")
    assert_one_line_error(run_qabot("eval", "--set", str(tmp_path / "half"), env=env), 1, "is not an eval set", "corpus/")
    result = run_qabot("eval", env=env)
    assert result.returncode == 2 and "--questions FILE or --set FOLDER" in result.stderr
    assert not (tmp_path / "data" / "chroma").exists()  # nothing was built


@pytest.mark.slow
def test_eval_set_squad2_dev_runs_on_its_own_corpus_beside_the_users_index(built_data_dir: Path, tmp_path: Path,
                                                                            embedder: Embedder) -> None:
    from rag.index import Index

    data = tmp_path / "data"
    shutil.copytree(built_data_dir, data)
    # two of its five articles with their 40 questions, and 10 unanswerable ones: the whole set takes ~40 s
    questions = squad2_dev_questions()
    eval_set = part_of_squad2_dev(tmp_path / "squad2-part", [
        *(q for q in questions if q.get("gold_docs", [""])[0] in ("Jacksonville_Florida", "Sky_United_Kingdom")),
        *[q for q in questions if q.get("unanswerable")][:10]])
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(data)}
    result = run_qabot("eval", "--questions", str(DEV_QUESTIONS), "--set", str(eval_set), "--json",
                       "--min-hit-rate", "0.9", env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    dev, squad = (json.loads(line) for line in result.stdout.splitlines())
    assert dev["name"] == str(DEV_QUESTIONS) and squad["name"] == str(eval_set)
    assert (squad["questions"], squad["answerable"], squad["unanswerable"]) == (50, 40, 10)
    assert squad["hit_at_k"] >= 0.9 and dev["hit_at_k"] >= 0.9  # each set retrieves from its own articles
    for report in (dev, squad):
        assert 0 <= report["lead_contains"] <= report["answer_correctness"] <= 1
        assert report["median_lead_words"] > 0
        assert_monotone(report["refusal_tradeoff"])
    # the set's articles live in a collection of their own; the user's index holds only the user's corpus
    user = Index.from_settings(make_settings(CORPUS, data), embedder=embedder, lock="if-free")
    assert sorted(user.store.markers()) == sorted(p.name for p in CORPUS.iterdir() if p.is_file())
    measured = Index.from_settings(set_settings(make_settings(CORPUS, data), eval_set), embedder=embedder, lock="if-free")
    assert sorted(measured.store.markers()) == sorted(p.name for p in (eval_set / "corpus").iterdir())
