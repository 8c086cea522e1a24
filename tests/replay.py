"""Replaying a real model's recorded replies (tests/fixtures/llm_replies/) through qabot.

`python -m benchmarks.llm record` asked a real model qabot's questions and kept each prompt and raw
reply. Here the protocol-level fake OpenAI server gives each recorded reply back, after noting the
prompt qabot sent: a fixture whose prompts qabot no longer sends is stale (`stale` names its rows).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from rag.answer.prompts import untagged
from rag.text import split_sentences

from .conftest import open_pipeline
from .fakes.llm_servers import FakeOpenAI

RECORD = "python -m benchmarks.llm record {model} {path}"


def replay(fixture: dict[str, Any], corpus: Path, data: Path, embedder: Any) -> list[tuple[dict, Any, list | None]]:  # noqa: ANN401
    """[(recorded row, qabot's answer, the prompt qabot sent or None)] for every recorded question."""
    settings = fixture["settings"]
    results = []
    with FakeOpenAI() as server:
        pipeline = open_pipeline(corpus, data, embedder, answerer="openai", llm_base_url=server.base_url,
                                 llm_model="fake", openai_api_key="sk-test-key", llm_timeout=5.0,
                                 top_k=settings["top_k"], llm_excerpts=settings["llm_excerpts"],
                                 llm_instructions=settings.get("llm_instructions", ""))
        for row in fixture["replies"]:
            sent: list[list[dict[str, str]]] = []

            def reply(req, row=row, sent=sent) -> str:  # noqa: ANN001
                sent.append([{"role": m["role"], "content": untagged(m["content"])} for m in req.messages])
                return row["reply"]

            if row["reply"] is not None:
                server.enqueue(reply)
            answer = pipeline.ask(row["question"])
            results.append((row, answer, sent[0] if sent else None))
    return results


def stale(results: list[tuple[dict, Any, list | None]], fixture: dict[str, Any], path: Path) -> str:
    """'' when qabot sent every recorded prompt, else what to run to record the fixture again."""
    rows = [row["id"] for row, _, prompt in results if prompt != row["prompt"]]
    if not rows:
        return ""
    command = RECORD.format(model=fixture["model"], path=path.relative_to(Path(__file__).resolve().parent.parent))
    return f"qabot's prompts changed for {rows}: record the fixture again: {command}" + (
        " --set hostile" if fixture.get("set") == "hostile" else "")


def shown_sentences(text: str) -> list[str]:
    """The sentences of an answer, a citation after a closing quote mark kept with its sentence."""
    text = text.strip()
    sentences: list[str] = []
    for a, b in split_sentences(text):
        if sentences and not re.search(r"[^\W\d]", text[a:b]):
            sentences[-1] += text[a:b]
        else:
            sentences.append(text[a:b])
    return sentences


def is_looping(text: str) -> bool:
    """A three-word phrase said three times: a model caught in a loop."""
    return bool(re.search(r"\b(\w+ \w+ \w+)\b(?:.*?\b\1\b){2}", text))
