"""The reader's training examples (training/reader/data.py) on a tiny SQuAD-shaped article: no data needed,
but for the check of the shipped look-alikes against SQuAD's training data (skipped without it)."""

from __future__ import annotations

import json

import pytest

from training.reader.data import (
    DATA_DIR,
    LOOKALIKES,
    SQUAD11,
    SQUAD20,
    SQUAD20_WHOLE,
    is_held_out,
    load_splits,
    make_examples,
    read_lookalikes,
    read_squad,
    same_paragraph_answerable,
    squad20_file,
)
from training.reader.lookalike_paragraphs import draw

ARTICLE = {"title": "Lighthouse", "paragraphs": [{
    "context": "The lighthouse was designed by Ingrid Solberg in 1891. Keepers staffed it until 1987.",
    "qas": [
        {"id": "q1", "question": "Who designed the lighthouse?", "answers": [{"text": "Ingrid Solberg", "answer_start": 31}]},
        {"id": "q2", "question": "When did keepers leave the lighthouse?", "answers": [{"text": "1987", "answer_start": 80}]},
        {"id": "q3", "question": "Was the lighthouse designed in 1891?", "answers": [{"text": "1891", "answer_start": 49}]},
    ]}]}


def test_negated_look_alikes_are_no_answer_examples_in_plain_english() -> None:
    examples = list(make_examples([ARTICLE], seed=1, window_share=0.0, negative_share=0.0, negate_share=1.0))
    negated = {e.question: e for e in examples if e.kind == "negated"}
    # "did" -> "didn't" keeps the question English; a yes/no question ("Was…?") is left alone
    assert set(negated) == {"When didn't keepers leave the lighthouse?"}, set(negated)
    assert all(not e.answers and e.context == ARTICLE["paragraphs"][0]["context"] for e in negated.values())
    # the answerable examples are the same with or without the negated ones (their own seeded draws)
    plain = list(make_examples([ARTICLE], seed=1, window_share=0.0, negative_share=0.0))
    assert [e for e in examples if e.kind != "negated"] == plain


def test_a_passage_that_negates_something_gives_no_negated_look_alike() -> None:
    article = {"title": "T", "paragraphs": [{**ARTICLE["paragraphs"][0],
                                            "context": ARTICLE["paragraphs"][0]["context"] + " It was not lit in 1990."}]}
    examples = make_examples([article], seed=1, window_share=0.0, negative_share=0.0, negate_share=1.0)
    assert not [e for e in examples if e.kind == "negated"]


def test_antonym_look_alikes_swap_a_word_of_the_passage_for_an_antonym_it_lacks() -> None:
    """SQuAD 2.0's commonest look-alike, from WordNet's antonyms (training/reader/antonyms.tsv)."""
    article = {"title": "Tower", "paragraphs": [{
        "context": "The first keeper of the tower was Ingrid Solberg. The tower was popular with painters and "
                   "unpopular with sailors.",
        "qas": [
            {"id": "a1", "question": "Who was the first keeper of the tower?",
             "answers": [{"text": "Ingrid Solberg", "answer_start": 34}]},
            # "unpopular" stands in the passage too: swapping "popular" would not make a look-alike
            {"id": "a2", "question": "Who was the tower popular with?", "answers": [{"text": "painters", "answer_start": 78}]},
            {"id": "a3", "question": "Was the tower popular with painters?", "answers": [{"text": "painters", "answer_start": 78}]},
        ]}]}
    examples = list(make_examples([article], seed=3, window_share=0.0, negative_share=0.0, antonym_share=1.0))
    opposite = {e.question for e in examples if e.kind == "antonym"}
    assert len(opposite) == 1 and opposite <= {"Who was the last keeper of the tower?", "Who was the second keeper of the tower?"}, opposite
    assert all(not e.answers for e in examples if e.kind == "antonym")
    plain = list(make_examples([article], seed=3, window_share=0.0, negative_share=0.0))
    assert [e for e in examples if e.kind != "antonym"] == plain


def test_the_antonym_table_is_read_from_wordnets_own_files(tmp_path) -> None:  # noqa: ANN001
    """Two real lines of WordNet 3.0's data.adj (able / unable), under its licence header."""
    from training.reader.antonyms import antonym_pairs

    (tmp_path / "data.adj").write_text(
        "  1 This software and database is being provided to you, the LICENSEE, by  \n"
        "00001740 00 a 01 able 0 005 = 05200169 n 0000 = 05616246 n 0000 + 05616246 n 0101 + 05200169 n 0101 "
        "! 00002098 a 0101 | (usually followed by `to') having the necessary means  \n"
        "00002098 00 a 01 unable 0 002 = 05200169 n 0000 ! 00001740 a 0101 | (usually followed by `to') not having  \n")
    for name in ("data.verb", "data.adv"):
        (tmp_path / name).write_text("")
    assert sorted(antonym_pairs(tmp_path)) == [("a", "able", "unable"), ("a", "unable", "able")]


def test_an_antonym_takes_over_the_verbs_ending() -> None:
    """"opened" -> "closed" (not "closeed"); the ending is only a verb's."""
    article = {"title": "Museum", "paragraphs": [{
        "context": "The museum was opened in 1990 by the mayor.",
        "qas": [{"id": "m1", "question": "When was the museum opened?", "answers": [{"text": "1990", "answer_start": 25}]}],
    }]}
    examples = make_examples([article], seed=3, window_share=0.0, negative_share=0.0, antonym_share=1.0)
    assert {e.question for e in examples if e.kind == "antonym"} == {"When was the museum closed?"}


def test_hand_written_look_alikes_are_no_answer_examples_on_their_own_paragraph(tmp_path) -> None:  # noqa: ANN001
    lines = [
        {"id": "Lighthouse#0", "question": "Who demolished the lighthouse?", "kind": "antonym",
         "plausible_answer": "Ingrid Solberg"},
        {"id": "Lighthouse#0", "question": "When did keepers return to the lighthouse?", "kind": "other",
         "plausible_answer": "1987"},
    ]
    path = tmp_path / "lookalikes.jsonl"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    written = read_lookalikes(path, [ARTICLE])
    examples = [e for e in make_examples(written, seed=1, window_share=0.0, negative_share=0.0)]
    assert [(e.question, e.kind, e.answers) for e in examples] == [
        ("Who demolished the lighthouse?", "written", ()), ("When did keepers return to the lighthouse?", "written", ())]
    assert {e.context for e in examples} == {ARTICLE["paragraphs"][0]["context"]}
    assert len({e.qid for e in examples}) == 2

    # the file and the training data out of step: an error that names the line, not a silent skip
    for bad, says in (({**lines[0], "id": "Lighthouse#3"}, "no paragraph 'Lighthouse#3'"),
                      ({**lines[0], "plausible_answer": "Tomas Ibarra"}, "plausible answer is not in")):
        path.write_text(json.dumps(lines[1]) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=f"lookalikes.jsonl:2: .*{says}"):
            read_lookalikes(path, [ARTICLE])


SQUAD_TRAIN = DATA_DIR  # shared/ beside the checkout, as on the project's machines and CI


@pytest.mark.skipif(not (SQUAD_TRAIN / SQUAD11).is_file(), reason=f"no SQuAD training data in {SQUAD_TRAIN}")
def test_the_shipped_look_alikes_each_stand_on_a_training_paragraph_that_tempts_but_does_not_answer() -> None:
    rows = [json.loads(line) for line in LOOKALIKES.read_text(encoding="utf-8").splitlines()]
    assert len({r["question"] for r in rows}) == len(rows) == 720
    assert {r["kind"] for r in rows} == {"antonym", "entity-swap", "negation", "impossible-condition",
                                          "mutual-exclusion", "other"}
    articles = read_squad(SQUAD_TRAIN / SQUAD11)
    written = read_lookalikes(LOOKALIKES, articles)  # raises if a paragraph or a plausible answer is missing
    assert not any(is_held_out(a["title"]) for a in written)  # never on the articles that calibrate the reader
    assert {r["id"] for r in rows} == {r["id"] for r in draw(SQUAD_TRAIN)}  # the draw they were written on


def test_squad_2_0s_whole_training_set_is_taken_when_it_is_put_beside_the_sample(tmp_path) -> None:  # noqa: ANN001
    """Its ~43,500 real look-alikes are what the reader lacks (the training README): dropping the file in is enough."""
    import gzip

    def write(name: str, question: str, impossible: bool) -> None:
        qa = {"id": name, "question": question, "is_impossible": impossible,
              "answers": [] if impossible else [{"text": "Ingrid Solberg", "answer_start": 31}]}
        article = {"title": "Lighthouse", "paragraphs": [{"context": ARTICLE["paragraphs"][0]["context"], "qas": [qa]}]}
        with gzip.open(tmp_path / name, "wt", encoding="utf-8") as fh:
            json.dump({"data": [article]}, fh)

    write(SQUAD11, "Who designed the lighthouse?", False)
    write(SQUAD20, "Who demolished the lighthouse?", True)
    shares = {"seed": 1, "window_share": 0.0, "negative_share": 0.0}
    assert [e.question for e in load_splits(tmp_path, **shares)[0] if e.kind == "impossible"] == ["Who demolished the lighthouse?"]
    write(SQUAD20_WHOLE[0], "Who painted the lighthouse?", True)
    assert squad20_file(tmp_path).name == SQUAD20_WHOLE[0]
    assert [e.question for e in load_splits(tmp_path, **shares)[0] if e.kind == "impossible"] == ["Who painted the lighthouse?"]


def test_a_look_alike_is_paired_with_the_answerable_questions_of_its_own_paragraph() -> None:
    """`--impossible-repeat`: the look-alike's paragraph read both ways, whole or as a window of its sentences."""
    other = {"context": "The harbour museum opened in 1990. It shows the old lamp.",
             "qas": [{"id": "o1", "question": "When did the museum open?", "answers": [{"text": "1990", "answer_start": 29}]}]}
    paragraph = ARTICLE["paragraphs"][0]
    article = {"title": "Lighthouse", "paragraphs": [
        {**paragraph, "qas": [*paragraph["qas"], {"id": "x1", "question": "Who demolished the lighthouse?", "is_impossible": True}]},
        other]}
    examples = list(make_examples([article], seed=1, window_share=0.5, negative_share=0.0))
    impossible = [e for e in examples if e.kind == "impossible"]
    paired = same_paragraph_answerable(examples, impossible)
    assert {e.qid for e in paired} == {"q1", "q2", "q3"}, [(e.qid, e.kind) for e in paired]
    assert {e.kind for e in paired} == {"paragraph", "window"}  # a window of the paragraph counts as it
