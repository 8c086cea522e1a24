"""The reader's training examples (training/reader/data.py) on a tiny SQuAD-shaped article: no data needed."""

from __future__ import annotations

from training.reader.data import make_examples

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
