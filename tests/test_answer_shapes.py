"""The shape of offline answers: the answer first as a verbatim fragment, then the evidence.

Run on the repository corpus and on tests/data/shapes (four short articles written for these
tests: an earthquake, a city budget with a bridge and a solar farm, and two countries signing the
same treaty), with the real model, real Chroma and the real spaCy annotations made at ingest.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rag.nlp import META_KEY, Annotation, annotation_of
from rag.quotes import verify_quote

from .conftest import CORPUS, DEV_QUESTIONS, MORE_QUESTIONS, assert_answered, assert_refused, open_pipeline, run_qabot

SHAPES = Path(__file__).resolve().parent / "data" / "shapes"


def lead(text: str) -> str:
    """The answer text before its first citation: what a reader sees first."""
    m = re.search(r"\[\d+\]", text)
    return (text[: m.start()] if m else text).strip()


def article(pipeline, doc_id: str) -> str:  # noqa: ANN001
    return " ".join(c.text for c in pipeline.index.store.get_document(doc_id))


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory, embedder):  # noqa: ANN001 -> QAPipeline
    return open_pipeline(SHAPES, tmp_path_factory.mktemp("shapes"), embedder, sync=True)


@pytest.mark.parametrize(
    ("question", "needle"),
    [
        pytest.param("Who is Mike Pence?", "Vice President", marks=pytest.mark.xfail(
            strict=True, reason="the reader's span, widened over the candidates it finds nearly as likely, is the "
                                "whole sentence (22 words): SQuAD has few 'who is X?' questions")),
        ("Who is Robert Kahofer?", "chief of cabinet"),
        # an acronym the embedding model never saw is far in meaning from its sentence (cosine ~0.2): a
        # "What is X?" is judged on the name the sentence gives, not on that meaning
        ("What is NUKIB?", "cybersecurity agency"),
    ],
)
def test_who_and_what_is_lead_with_the_phrase_that_describes_them(pipeline, question: str, needle: str) -> None:  # noqa: ANN001
    answer = pipeline.ask(question)
    assert_answered(answer, pipeline.settings)
    first = lead(answer.text)
    assert needle in first and len(first.split()) <= 15, first


def test_a_name_the_articles_never_mention_is_refused(pipeline, shapes) -> None:  # noqa: ANN001
    for p in (pipeline, shapes):
        answer = p.ask("Who is Robert Smith?")
        assert_refused(answer, p.settings)
        assert not answer.sources
        assert answer.evidence < p.settings.min_evidence  # recorded for `qabot eval`'s trade-off


def test_a_number_question_leads_with_the_number(shapes) -> None:  # noqa: ANN001
    answer = shapes.ask("How much will the Eastgate bridge cost?")
    assert lead(answer.text) == "$310 million"
    # then the sentence that says so, quoted and verifiable
    assert "“The largest single project is the new Eastgate bridge" in answer.text
    assert verify_quote(answer.sources[0].quote, article(shapes, answer.sources[0].doc_id))


def test_a_number_the_article_gives_elsewhere_does_not_answer(shapes) -> None:  # noqa: ANN001
    """A look-alike question: 212 stands in the article (the dead), not with the dam's cracks."""
    answered = shapes.ask("How many homes did the 6.8 earthquake destroy?")
    assert "4,000" in lead(answered.text), answered.text
    look_alike = shapes.ask("Who checked the dam for 212 cracks?")
    assert_refused(look_alike, shapes.settings)
    assert look_alike.evidence < shapes.settings.min_evidence <= answered.evidence


def test_a_name_inside_another_word_is_not_a_mention(shapes) -> None:  # noqa: ANN001
    """"OLA" stands inside "solar", and the articles never name an OLA."""
    assert_refused(shapes.ask("What did the OLA say about the solar farm?"), shapes.settings)
    assert_answered(shapes.ask("What did the council say about the solar farm?"), shapes.settings)


def test_an_acronym_is_mentioned_by_its_spelled_out_name(pipeline) -> None:  # noqa: ANN001
    """The article says "the European Union", the question "EU"."""
    answer = pipeline.ask("Which organisations besides EU countries were expected at the Prague meeting?")
    assert_answered(answer, pipeline.settings)
    assert "NATO" in lead(answer.text), answer.text
    assert not lead(answer.text).startswith("the European Union")  # the question's own EU is no answer


@pytest.mark.xfail(strict=True, reason="the span reader answers 'Who was sleeping in tents?' with the speaker, "
                                      "Tomas Ibarra (see the reader issue's notes)")
def test_who_did_something_is_not_read_as_who_is(shapes) -> None:  # noqa: ANN001
    """"Who voted…", "Who was sleeping…" ask for whoever did it; only "Who is <name>?" asks for a description."""
    assert lead(shapes.ask("Who voted against the budget?").text) == "Ana Duarte"
    # the only person in the sentence is the speaker, far from "sleeping in tents": no two-word guess
    answer = shapes.ask("Who was sleeping in tents?")
    assert "18,000" in lead(answer.text) and lead(answer.text) != "Tomas Ibarra", answer.text


def test_who_is_reads_a_description_in_front_of_the_name(shapes) -> None:  # noqa: ANN001
    assert lead(shapes.ask("Who is Tomas Ibarra?").text) == "The regional governor"
    assert lead(shapes.ask("Who is Ana Duarte?").text) == "Council member"


def test_a_comparison_quotes_each_side(shapes) -> None:  # noqa: ANN001
    answer = shapes.ask("Which cost more, the bridge or the solar farm?")
    assert_answered(answer, shapes.settings)
    first = lead(answer.text.replace("[1] ", "", 1)) if answer.text.count("[") > 1 else lead(answer.text)
    assert "$310 million" in answer.text and "$85 million" in answer.text
    assert "bridge" in answer.text and "solar farm" in first + answer.text
    # both sides are cited: two sentences, each followed by its citation
    assert len(re.findall(r"\[\d+\]", answer.text)) >= 2


def test_summarise_quotes_the_lead_of_that_article(shapes) -> None:  # noqa: ANN001
    answer = shapes.ask("Summarise the article about the earthquake")
    assert [s.doc_id for s in answer.sources] == ["quake_relief.txt"]
    assert answer.text.startswith("Relief convoys reached the mountain villages of Valdora province")
    assert "212 people had died" in answer.text  # more than one sentence of it
    assert "Advertisement" not in answer.text and "By Lena Marsh" not in answer.text


def test_who_wrote_the_article_leads_with_its_byline(pipeline, shapes) -> None:  # noqa: ANN001
    """The author is the article's byline, cited where the article names them (so it verifies)."""
    answer = shapes.ask("Who wrote the article about the earthquake relief?")
    assert lead(answer.text) == "Lena Marsh", answer.text
    assert answer.sources[0].doc_id == "quake_relief.txt"
    assert verify_quote(answer.sources[0].quote, article(shapes, "quake_relief.txt"))
    assert lead(shapes.ask("Who is the author of the story on the Harbor City budget?").text) == "Priya Nair"
    # the author block at the end of a real article, not the byline at its start
    mwl = pipeline.ask("Who wrote the Mobile World Live article about the US 5G security campaign?")
    assert lead(mwl.text) == "Chris Donkin", mwl.text
    # writing that the article reports on is not the article's byline
    assert shapes.ask("Who wrote the letter about the bridge?").text.split(" [")[0] != "Priya Nair"


def test_a_list_question_gathers_across_articles(shapes) -> None:  # noqa: ANN001
    answer = shapes.ask("Which countries have signed the Baltic fisheries treaty?")
    first = answer.text.split("\n")[0]
    assert "Finland" in first and "Estonia" in first
    assert {s.doc_id for s in answer.sources} == {"treaty_finland.txt", "treaty_estonia.txt"}


#: Three short articles written for the list test: two pacts with Canada, and a warning that names a country
#: beside "signing shipping pacts" without saying it signed one with Canada.
PACTS = {
    "norway_pact.txt": "Norway and Canada sign Arctic shipping pact\n\nBy Lena Holt\n\nJune 3, 2026\n\n"
    "Norway and Canada signed an Arctic shipping pact in Tromsø on Tuesday, setting shared rules for ice-class cargo "
    "ships on the northern route.\n\nThe pact lets ships of either country refuel at the other's Arctic ports. "
    "Norwegian officials said the first convoys would sail in July.\n",
    "iceland_pact.txt": "Iceland follows with its own Arctic pact\n\nBy Paul Brandt\n\nJune 18, 2026\n\n"
    "Canada and Iceland signed a similar Arctic shipping pact in Reykjavik on Monday, after a year of talks over "
    "fishing rights.\n\nCanada has also pressed the European Union to adopt the same rules for its ports on the "
    "Atlantic.\n",
    "port_warning.txt": "Port authorities warned over shipyard deals\n\nBy Ines Marr\n\nJune 20, 2026\n\n"
    "Harbour officials urged port operators not to rush into signing shipping pacts with countries like Panama, "
    "citing unpaid repair bills.\n\nThe warning follows a dispute over two ferries that were delivered a year late.\n",
}


def test_a_list_names_what_the_question_does_not(tmp_path: Path, embedder) -> None:  # noqa: ANN001
    """Asked who signed *with Canada*, the items are the other signers ("Iceland", not "Canada and Iceland"),
    and a sentence that never names Canada adds none ("…signing shipping pacts with countries like Panama")."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for name, text in PACTS.items():
        (corpus / name).write_text(text, encoding="utf-8")
    pacts = open_pipeline(corpus, tmp_path / "data", embedder, sync=True)
    answer = pacts.ask("Which countries have signed shipping pacts with Canada?")
    first = answer.text.split("\n")[0]
    items = [re.sub(r"\s*\[\d+\]$", "", item) for item in first.split("; ")]
    assert sorted(items) == ["Iceland", "Norway"], answer.text
    assert {s.doc_id for s in answer.sources} == {"norway_pact.txt", "iceland_pact.txt"}
    # each item is bold in the quote it stands in, and the quote stays verbatim
    assert "“Canada and **Iceland** signed" in answer.text and "“**Norway** and Canada signed" in answer.text, answer.text
    for source in answer.sources:
        assert verify_quote(source.quote, article(pacts, source.doc_id))


def test_a_list_in_one_phrase_is_the_whole_answer(pipeline) -> None:  # noqa: ANN001
    """"China and Russia" answers "which countries…"; other countries named nearby are not added to it."""
    first = pipeline.ask("Which countries were not invited to the Prague meeting?").text.split("\n")[0]
    assert re.fullmatch(r"China and Russia \[\d+\]", first), first


def test_every_quote_stands_in_its_article(pipeline, shapes) -> None:  # noqa: ANN001
    questions = [json.loads(line)["question"] for f in (DEV_QUESTIONS, MORE_QUESTIONS) for line in f.read_text().splitlines()]
    checks = [(pipeline, q) for q in questions] + [
        (shapes, q) for q in ("Which cost more, the bridge or the solar farm?", "How many people died in the earthquake?",
                              "Why did Ana Duarte vote against the budget?", "Summarise the article about the earthquake",
                              "Which countries have signed the Baltic fisheries treaty?", "Who is Tomas Ibarra?")
    ]
    for p, question in checks:
        answer = p.ask(question)
        for source in answer.sources:
            assert source.quote and verify_quote(source.quote, article(p, source.doc_id)), (question, source.quote)
            assert f"[{source.n}]" in answer.text


def test_a_cut_fragment_does_not_end_on_a_function_word(pipeline) -> None:  # noqa: ANN001
    """"…and is centered on the" reads as cut off: the lead ends on a word that says something."""
    dangling = {"the", "a", "an", "of", "and", "or", "to", "in", "on", "at", "for", "with", "by", "from", "that", "is", "was"}
    questions = [json.loads(line)["question"] for f in (DEV_QUESTIONS, MORE_QUESTIONS) for line in f.read_text().splitlines()]
    questions += ["What did the Czech cybersecurity agency warn against?", "What did Huawei say about its investment in Poland?",
                  "Where will the officials meet?", "What did Mike Pence say about the agreement?"]
    leads = [lead(a.text) for a in map(pipeline.ask, questions) if not a.refused]
    assert len(leads) >= 20
    ends = [x for x in leads if re.sub(r"\W", "", x.split()[-1].lower()) in dangling]
    assert not ends, ends


def test_annotations_are_made_at_ingest_and_made_on_the_fly_when_missing(pipeline) -> None:  # noqa: ANN001
    chunks = pipeline.index.store.get_document("002_1422b7e4d913b162.txt")
    annotations = [Annotation.from_json(c.metadata[META_KEY]) for c in chunks]
    assert all(a is not None and a.sentences for a in annotations)
    assert any(c.text[x.start : x.end] == "NUKIB" and x.label == "ORG"
               for c, a in zip(chunks, annotations) for x in a.candidates)  # type: ignore[union-attr]
    chunk, stored = chunks[0], annotations[0]
    # an index written before annotations existed: the same annotation is made when retrieved
    bare = {k: v for k, v in chunk.metadata.items() if k != META_KEY}
    assert annotation_of(chunk.text, bare) == stored


def test_ask_json_answer_leads_with_the_fragment(built_data_dir: Path) -> None:
    result = run_qabot("ask", "--json", "In which city was the US-Poland 5G agreement signed?",
                       env={"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir)})
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    first = lead(row["answer"])
    assert "warsaw" in first.lower() and len(first.split()) <= 15, row["answer"]
    assert row["sources"] and "Warsaw" in row["sources"][0]["quote"]
