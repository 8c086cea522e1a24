"""Real models' replies to the dev questions, replayed through grounding and attribution.

`python -m benchmarks.llm record <model> tests/fixtures/llm_replies/<name>.json` asked the dev and more
questions with a real model on the 2-core machine (Qwen2.5-Coder-1.5B-Instruct from the `qwen` extra;
the file names the model and its sha256) and kept each prompt and raw reply. Here the protocol-level
fake OpenAI server answers each question with the recorded reply, after checking that qabot sends the
very prompt the model saw: a fixture whose prompts qabot no longer sends is stale, and says so.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.evaluate import contains_any
from rag.quotes import verify_quote

from .conftest import CORPUS, REPO
from .replay import is_looping, replay, shown_sentences, stale

FIXTURES = sorted((REPO / "tests" / "fixtures" / "llm_replies").glob("*.json"))


@pytest.fixture(scope="module", params=FIXTURES, ids=[p.stem for p in FIXTURES])
def replayed(request: pytest.FixtureRequest, built_data_dir: Path, embedder):  # noqa: ANN001, ANN201
    """(fixture, [(recorded row, answer, prompt qabot sent or None)], path) for one recorded model."""
    fixture = json.loads(request.param.read_text(encoding="utf-8"))
    return fixture, replay(fixture, CORPUS, built_data_dir, embedder), request.param


def test_qabot_sends_the_prompts_the_model_answered(replayed) -> None:  # noqa: ANN001
    fixture, results, path = replayed
    assert not stale(results, fixture, path), stale(results, fixture, path)


def test_every_shown_sentence_is_cited_to_a_source_and_every_quote_verifies(replayed, pipeline) -> None:  # noqa: ANN001
    _, results, _ = replayed
    for row, answer, _ in results:
        assert "<source" not in answer.text.lower(), (row["id"], answer.text)  # no fence markup, closed or not
        if answer.llm_use not in ("as written", "attributed"):
            continue
        # a model caught in a loop ("…on 5G networks on 5G networks…") is not shown, though every word is the source's
        assert not is_looping(answer.text), (row["id"], answer.text)
        sentences = shown_sentences(answer.text)
        assert all(re.search(r"\[\d+\]", s) for s in sentences), (row["id"], answer.text)
        assert len(set(sentences)) == len(sentences), (row["id"], answer.text)  # a looping model's lines, once
        for source in answer.sources:
            article = " ".join(c.text for c in pipeline.index.store.get_document(source.doc_id))
            assert source.quote and verify_quote(source.quote, article), (row["id"], source.quote)


def test_the_instruct_model_answers_what_it_is_asked(replayed) -> None:  # noqa: ANN001
    """The LLM issue's bar on the dev and more questions: the model's answer used for >= 85% of the
    answerable questions, >= 90% correct, every unanswerable one refused."""
    fixture, results, _ = replayed
    if "instruct" not in fixture["model"]:
        pytest.skip(f"{fixture['model']} is a base model: its replies are checked for safety only")
    answerable = [(row, a) for row, a, _ in results if row["answerable"]]
    used = [row["id"] for row, a in answerable if a.llm_use in ("as written", "attributed")]
    correct = [row["id"] for row, a in answerable if not a.refused and contains_any(a.text, _accepted(row["id"]))]
    assert len(used) >= 0.85 * len(answerable), {row["id"]: a.llm_use for row, a in answerable}
    assert len(correct) >= 0.90 * len(answerable), sorted({row["id"] for row, _ in answerable} - set(correct))
    assert all(a.refused for row, a, _ in results if not row["answerable"])


def _accepted(qid: str) -> list[str]:
    for name in ("dev_questions.jsonl", "more_questions.jsonl"):
        for line in (REPO / "tests" / "data" / name).read_text(encoding="utf-8").splitlines():
            q = json.loads(line)
            if q["id"] == qid:
                return q.get("answer_any", [])
    raise KeyError(qid)
