"""OWASP LLM05/LLM10: hostile questions get a clear message and bounded work; LLM floods are capped."""

from __future__ import annotations

import time

import pytest

from rag.pipeline import InvalidQuestionError, QAPipeline

from .fakes.llm_servers import FakeOpenAI

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("question", "message"),
    [
        ("", "in words"),
        ("\n\n\t  ", "in words"),
        ("x" * 50_000, "under 2,000"),
        ("Which agency\x00 organises it?", "NUL"),
        ("🔥" * 1500, "in words"),
        ("\u202e\u202d\u2066", "in words"),
        ("".join(chr(0x300 + i % 100) for i in range(1500)), "in words"),  # combining marks only
    ],
    ids=["empty", "whitespace", "50KB", "NUL", "emoji-flood", "bidi-only", "zalgo-only"],
)
def test_rejected_questions_get_a_message_and_no_llm_call(openai_server: FakeOpenAI, openai_pipeline: QAPipeline, question: str, message: str) -> None:
    started = time.monotonic()
    with pytest.raises(InvalidQuestionError, match=message):
        openai_pipeline.ask(question)
    assert time.monotonic() - started < 1.0
    assert openai_server.chat_requests == []


def test_disguised_questions_are_cleaned_then_answered(pipeline) -> None:  # noqa: ANN001
    zalgo = "".join(ch + "\u0336\u0337" for ch in "Which Czech agency") + " is organising the Prague 5G security meeting?"
    rlo = "Which Czech agency is organising the \u202eteem\u202c Prague 5G security meeting?"
    for question in (zalgo, rlo, "Which Czech agency is organising the Prague 5G security meeting? " + "🙂" * 200):
        answer = pipeline.ask(question)
        assert "NUKIB" in answer.text, question
        assert "\u0336" not in answer.question and "\u202e" not in answer.question


def test_flooded_llm_reply_is_capped(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue_text("NUKIB organises the meeting [1]. " + "Spam spam spam. " * 700)
    answer = openai_pipeline.ask("Which Czech agency is organising the Prague 5G security meeting?")
    # capped at 3,000 characters, then the spam, which no article says, is left out
    assert answer.text == "NUKIB organises the meeting [1].", answer.text
    assert "Left out" in answer.notice and "Spam" not in answer.notice


def test_mentions_in_llm_output_stay_text_for_the_edges(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    """rag strips links/images; pings are neutralised where they could fire (Discord sends no mentions)."""
    openai_server.enqueue_text("@everyone <@&123456> NUKIB organises it [1]. ![x](https://cdn.evil.example/a.png) "
                               "More at [the agency's site](https://evil.example).")
    answer = openai_pipeline.ask("Which Czech agency is organising the Prague 5G security meeting?")
    assert "evil.example" not in answer.text and "![" not in answer.text
    # the statement stays as written, mentions included (the edges neutralise them)
    assert answer.text.startswith("@everyone <@&123456> NUKIB organises it [1].") and "(" not in answer.text, answer.text
    # what was left of the link's sentence ("More at the agency's site.") is no claim of any article: left out
    assert "More at" not in answer.text and "Left out" in answer.notice, answer.text
