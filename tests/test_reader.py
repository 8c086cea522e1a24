"""The span reader in answers: spans on an article written for these tests, refusals of look-alikes,
the bold span in chat and Discord, one quote shown once, and answers without the model.

The article (tests/data/reader/) was written for these tests and is in no training or dev set; the
pipeline is the real one (real model, real Chroma, the shipped int8 reader).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pexpect
import pytest

from rag.answer.reader import PACKAGED_READER, SpanReader
from rag.quotes import verify_quote

from .conftest import QABOT, REPO, assert_answered, assert_refused, open_pipeline, run_qabot

READER_CORPUS = Path(__file__).resolve().parent / "data" / "reader"
LIGHTHOUSE = "harbour_lighthouse.md"

#: (question, the span the lead must be): each stated in one sentence of the article.
SPANS = [
    ("Who designed the new lamp of the Skarvik lighthouse?", "Ingrid Solberg"),
    ("How much did the restoration of the Skarvik lighthouse cost?", "48 million kroner"),
    ("When was the Skarvik lighthouse first lit?", "1891"),
    ("How far away can the new Skarvik lamp be seen?", "22 nautical miles"),
]


def lead(text: str) -> str:
    m = re.search(r"\[\d+\]", text)
    return (text[: m.start()] if m else text).strip()


@pytest.fixture(scope="module")
def lighthouse(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001 -> QAPipeline
    return open_pipeline(READER_CORPUS, tmp_path_factory.mktemp("reader"), embedder, sync=True)


@pytest.fixture(scope="module")
def lighthouse_data(tmp_path_factory: pytest.TempPathFactory, lighthouse) -> Path:  # noqa: ANN001
    """The lighthouse index on disk, for `qabot` processes."""
    return lighthouse.settings.data_dir


@pytest.mark.parametrize(("question", "span"), SPANS)
def test_the_answer_leads_with_the_span_then_quotes_it_in_bold(lighthouse, question: str, span: str) -> None:  # noqa: ANN001
    answer = lighthouse.ask(question)
    assert_answered(answer, lighthouse.settings)
    assert lead(answer.text).startswith(span) and len(lead(answer.text).split()) <= len(span.split()) + 2, answer.text
    # the sentence it stands in, quoted with the span in bold, citing the same source
    quote_line = answer.text.split("\n\n")[1]
    assert f"**{lead(answer.text)}**" in quote_line and quote_line.endswith("[1]"), answer.text
    (source,) = answer.sources
    article = " ".join(c.text for c in lighthouse.index.store.get_document(source.doc_id))
    assert verify_quote(source.quote, article) and span in source.quote
    assert "**" not in source.quote  # the quote itself stays verbatim


_OVERCONFIDENT = pytest.mark.xfail(strict=True, reason="the reader answers a look-alike when the passage holds a "
                                   "span of the asked type ('six', 'Ingrid Solberg'): margins -0.7 and 0.0 against "
                                   "QABOT_MIN_SPAN_MARGIN -2 (see the reader issue's notes)")


@pytest.mark.parametrize("question", [
    pytest.param("How many visitors did the Skarvik lighthouse museum have last year?", marks=_OVERCONFIDENT),
    pytest.param("What was the name of the last keeper of the Skarvik lighthouse?", marks=_OVERCONFIDENT),
])
def test_a_look_alike_the_article_does_not_answer_is_refused_by_the_reader(lighthouse, question: str) -> None:  # noqa: ANN001
    """On topic (the evidence clears its threshold) but the article never says it: the reader finds no span."""
    answer = lighthouse.ask(question)
    assert_refused(answer, lighthouse.settings)
    assert answer.evidence >= lighthouse.settings.min_evidence, "refused for lack of evidence, not by the reader"
    assert answer.margin is not None and answer.margin < lighthouse.settings.min_span_margin


def test_no_answer_shows_the_same_quote_twice(lighthouse, pipeline) -> None:  # noqa: ANN001
    from .conftest import DEV_QUESTIONS, MORE_QUESTIONS

    questions = [json.loads(line)["question"] for f in (DEV_QUESTIONS, MORE_QUESTIONS) for line in f.read_text().splitlines()]
    for p, q in [(pipeline, q) for q in questions] + [(lighthouse, q) for q, _ in SPANS]:
        answer = p.ask(q)
        quotes = [line for line in answer.text.split("\n\n")[1:] if line.startswith("“")]
        plain = [re.sub(r"\s*\[\d+\]$", "", x).replace("**", "") for x in quotes]
        assert len(plain) == len(set(plain)), (q, answer.text)
        assert not any(a != b and a.strip("“”") in b for a in plain for b in plain), (q, answer.text)


def test_a_window_reads_the_same_alone_or_beside_others() -> None:
    """int8 activations are scaled per call: each window runs alone, so a passage's span never depends on its company."""
    reader = SpanReader()
    passage = "The new lamp was designed by Ingrid Solberg, an engineer from Bergen who spent two winters testing lenses."
    others = ["Mayor Erik Lund pressed the switch in front of about 300 residents. " * 3, "It was automated in 1987."]
    alone = reader.read("Who designed the lamp?", [passage])[0]
    together = reader.read("Who designed the lamp?", [*others, passage])[2]
    assert alone == together or (alone.text, alone.score, alone.null_score) == (together.text, together.score, together.null_score)
    assert alone is not None and alone.text == "Ingrid Solberg"


def test_passages_read_at_once_give_the_spans_they_give_one_after_another() -> None:
    """A list question's passages are read two at once where a core is free (parallel_calls.py): each window is
    still its own call, so every span and score is the one it gets read alone, to the last bit."""
    reader = SpanReader()
    passages = [f"In {1990 + i} the council of town {i} elected Mayor Anna Berg{i} after a long campaign about harbours."
                for i in range(8)] + ["Mayor Erik Lund pressed the switch in front of about 300 residents. " * 12]
    try:
        reader.run_in_parallel(2)
        at_once = reader.read("Who was elected mayor?", passages)
        reader.run_in_parallel(1)
        one_by_one = reader.read("Who was elected mayor?", passages)
    finally:
        reader.run_in_parallel(2)
    assert at_once == one_by_one and sum(s is not None for s in at_once) >= 8


def test_a_span_widens_to_hold_the_readings_the_reader_hesitates_between(lighthouse, tmp_path: Path) -> None:  # noqa: ANN001
    """The shipped `cover` (reader.json) widens a span to the overlapping ones the model finds nearly as
    likely: "about 300", not a bare "300"; the widened span always holds the best one."""
    narrow_dir = tmp_path / "narrow"
    shutil.copytree(PACKAGED_READER, narrow_dir)
    config = json.loads((narrow_dir / "reader.json").read_text())
    assert 0 < config["cover"] < 1, config  # calibrated by training/reader on held-out articles
    (narrow_dir / "reader.json").write_text(json.dumps({**config, "cover": 1.0}))
    narrow, wide = SpanReader(narrow_dir), SpanReader()
    passage = ('Mayor Erik Lund, who pressed the switch in front of about 300 residents, said the town had missed the '
               'beam every night. "Fishermen told me they felt safer the moment they saw it," he said.')
    assert narrow.read("How many residents watched?", [passage])[0].text == "300"
    assert wide.read("How many residents watched?", [passage])[0].text == "about 300"
    article = (READER_CORPUS / LIGHTHOUSE).read_text()
    for question, _ in SPANS:
        (a,), (b,) = narrow.read(question, [article]), wide.read(question, [article])
        assert b.start <= a.start and a.end <= b.end and b.margin == a.margin, (question, a, b)
    answer = lighthouse.ask("How many residents watched the mayor press the switch?")
    assert lead(answer.text) == "about 300", answer.text


def _missing_or_damaged(tmp_path: Path, how: str) -> Path:
    folder = tmp_path / f"reader-{how}"
    if how == "missing":
        folder.mkdir()
    else:
        shutil.copytree(PACKAGED_READER, folder)
        data = (folder / "model.onnx").read_bytes()
        (folder / "model.onnx").write_bytes(data[: len(data) // 3])  # a download cut short
    return folder


@pytest.mark.parametrize("how", ["missing", "damaged"])
def test_without_a_usable_reader_answers_quote_whole_sentences(lighthouse_data: Path, tmp_path: Path, how: str) -> None:
    env = {"QABOT_CORPUS_DIR": str(READER_CORPUS), "QABOT_DATA_DIR": str(lighthouse_data),
           "QABOT_READER_DIR": str(_missing_or_damaged(tmp_path, how))}
    result = run_qabot("ask", "--json", SPANS[0][0], env=env)
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert not row["refused"] and "Ingrid Solberg" in row["answer"]
    assert lead(row["answer"]).startswith("The new lamp was designed by Ingrid Solberg")  # the whole sentence
    assert "Traceback" not in result.stderr
    warnings = [line for line in result.stderr.splitlines() if "reader" in line]
    assert len(warnings) == 1 and ("missing" if how == "missing" else "damaged") in warnings[0], result.stderr
    health = run_qabot("health", env=env)
    line = next(x for x in health.stdout.splitlines() if x.split()[1:2] == ["reader"])
    assert line.startswith("warn") and "whole sentences" in line, health.stdout
    assert health.returncode == 0  # the bot still answers: a warning, not a failure


def test_chat_shows_the_span_in_bold_and_each_quote_once(lighthouse_data: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}
    env.update({"QABOT_CORPUS_DIR": str(READER_CORPUS), "QABOT_DATA_DIR": str(lighthouse_data), "PYTHONPATH": str(REPO),
                "HF_HUB_OFFLINE": "1", "TERM": "xterm", "COLUMNS": "200", "LINES": "50"})
    child = pexpect.spawn(QABOT[0], [*QABOT[1:], "chat"], env=env, encoding="utf-8", timeout=60, dimensions=(50, 200))
    try:
        child.expect_exact("you> ")
        child.sendline(SPANS[0][0])
        child.expect_exact("you> ")
        screen = child.before
    finally:
        child.close(force=True)
    # rich renders **Ingrid Solberg** as bold (SGR 1), without the asterisks
    assert re.search(r"\x1b\[[0-9;]*1[0-9;]*mIngrid Solberg", screen), screen
    assert "**" not in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", screen)
    assert plain.count("Bergen who spent two winters") == 1, plain  # the quote once: not again under Sources
    assert "Sources" in plain and "Restored Skarvik lighthouse" in plain


#: The questions of the reader issue, on the repository's corpus: (question, what the lead must hold; None: refuse).
PROBES = [
    ("Who signed the 5G agreement in Warsaw?", ["Pence", "Morawiecki"]),
    ("Which German newspaper wrote about the cabinet meeting on Huawei?", ["Handelsblatt"]),
    ("Who is Robert Kahofer?", ["NUKIB"]),
    ("When was the agreement signed?", ["Monday"]),
    # the Czech article's best chunks rank 6th and 9th: a list question also reads the next article's best two
    ("Which countries have signed agreements with the US on 5G?", ["Poland", "Czech"]),
    ("What is Huawei's annual revenue?", None),
    # a list's items after the first must be likelier than "no answer" in their passage: the ministers, not
    # the newspaper of the sentence before them
    ("Which German ministers attended the secret cabinet session on Huawei?", ["foreign", "transport"]),
    # an author block says "Dan is now editor-in-chief…" under the byline "Dan Oliver": the lead names him whole
    ("Who is the editor-in-chief of 5Gradar?", ["Dan Oliver"]),
]


@pytest.mark.parametrize(("question", "needles"), PROBES)
def test_the_issues_probes_are_answered_or_refused(pipeline, question: str, needles: list[str] | None) -> None:  # noqa: ANN001
    answer = pipeline.ask(question)
    if needles is None:
        assert answer.refused, answer.text
        # on topic (the evidence clears its bar): it is the reader that finds no revenue figure, by a clear margin
        assert answer.evidence >= pipeline.settings.min_evidence + 0.05, answer.evidence
        assert answer.margin is not None and answer.margin < pipeline.settings.min_span_margin - 1.0, answer.margin
        return
    assert_answered(answer, pipeline.settings)
    first = re.sub(r"\s*\[\d+\]", "", answer.text.split("\n")[0])  # the lead line: a list's items are each cited
    assert all(n in first for n in needles), answer.text
    assert len(first.split()) <= 15, first
    assert "Handelsblatt" not in first or "newspaper" in question, first
