"""LLM answerers against local servers that speak each provider's wire protocol.

What is asserted is what the user sees: the answer text, its sources and quotes, the notice,
and that failures never hang or leak a traceback.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rag.pipeline import InvalidQuestionError, QAPipeline
from rag.quotes import verify_quote
from rag.types import Turn

from .conftest import CORPUS, free_port, open_pipeline
from .fakes.llm_servers import FakeAnthropic, FakeOllama, FakeOpenAI, Reply

pytestmark = pytest.mark.timeout(120)

QUESTION = "Which Czech agency is organising the Prague 5G security meeting?"
REAL_QUOTE = "chief of cabinet at Czech cybersecurity agency NUKIB"


def _source_number_of(answer, doc_prefix: str) -> int:  # noqa: ANN001
    return next(s.n for s in answer.sources if s.doc_id.startswith(doc_prefix))


def test_grounded_reply_is_shown_with_verified_quote(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    # The fake answers whatever number the prompt gave the NUKIB excerpt.
    def reply(request) -> str:  # noqa: ANN001
        n = next(i for i in range(1, 9) if f'n="{i}"' in request.user_text and "NUKIB" in request.user_text.split(f'n="{i}"')[1].split("</source")[0])
        return f'The meeting is organised by NUKIB, the Czech cybersecurity agency: "{REAL_QUOTE}" [{n}].'

    openai_server.enqueue(reply)
    answer = openai_pipeline.ask(QUESTION)
    assert answer.backend == "openai:fake" and not answer.notice
    assert answer.text.endswith("[1].") and "[unverified quote]" not in answer.text
    assert answer.sources[0].doc_id == "002_1422b7e4d913b162.txt"
    assert REAL_QUOTE in answer.sources[0].quote
    request = openai_server.chat_requests[0]
    assert "untrusted DATA" in request.system_prompt
    assert "<source-" in request.user_text and QUESTION in request.user_text
    assert request.header("authorization") == "Bearer sk-test-key"


def test_fabricated_quote_and_missing_citation_are_marked_not_verified(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue_text(
        'NUKIB said "the meeting will ban Huawei forever" [1]. See also [9] and [1, 12].'
    )
    answer = openai_pipeline.ask(QUESTION)
    # no source holds the quote, so the sentence is not shown; nothing else of the reply is a statement
    assert "forever" not in answer.text and answer.backend.startswith("extractive (fallback")
    assert "nothing it said is supported by the articles" in answer.notice
    openai_server.enqueue(lambda request: f'NUKIB organises it [{_fence_of(request)[1]}]. NUKIB said "the meeting will ban '
                          'Huawei forever" [1]. See also [9] and [1, 12].')
    answer = openai_pipeline.ask(QUESTION)
    assert answer.text == "NUKIB organises it [1].", answer.text
    assert "[9], [12]" in answer.notice and "Left out 2 sentence(s)" in answer.notice  # the quote, "See also and ."
    assert [s.n for s in answer.sources] == [1]
    for source in answer.sources:  # what is shown as a source quote really is in the article
        assert "forever" not in source.quote
        text = " ".join(c.text for c in openai_pipeline.index.store.get_document(source.doc_id))
        assert verify_quote(source.quote, text)


def test_links_images_and_html_in_llm_output_are_stripped(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue_text(
        "@everyone NUKIB, the Czech cybersecurity agency, runs it [1]. ![pixel](https://evil.example/p.png) "
        "[click here](https://evil.example/phish) <img src=x onerror=alert(1)> www.evil.example/x"
    )
    answer = openai_pipeline.ask(QUESTION)
    assert "evil.example" not in answer.text and "<img" not in answer.text and "![" not in answer.text
    assert answer.backend == "openai:fake" and answer.text.startswith("@everyone NUKIB, the Czech cybersecurity agency")
    assert "click here" in answer.text  # the link text stays, the target goes


@pytest.mark.parametrize(
    ("script", "reason"),
    [
        (lambda s: s.enqueue_error(status=500), "HTTP 500"),
        (lambda s: s.enqueue_rate_limit(retry_after=30), "rate limited"),
        (lambda s: s.enqueue_malformed("{not json"), "malformed"),
        (lambda s: s.enqueue_cut("NUKIB organises it [1]. And more text that never"), ""),
        (lambda s: s.enqueue_text("The weather is nice today."), "nothing it said is supported by the articles"),
    ],
    ids=["500", "429", "malformed", "cut", "no-citation"],
)
def test_llm_failures_give_the_offline_answer_with_a_notice(openai_server: FakeOpenAI, openai_pipeline: QAPipeline, script, reason: str) -> None:  # noqa: ANN001
    script(openai_server)
    started = time.monotonic()
    answer = openai_pipeline.ask(QUESTION)
    assert time.monotonic() - started < 10  # a 30 s Retry-After is not waited for
    assert answer.backend == "extractive (fallback from openai:fake)"
    assert "offline answer" in answer.notice and reason in answer.notice
    assert "NUKIB" in answer.text and answer.sources


def test_stalled_llm_times_out_within_bound(openai_server: FakeOpenAI, built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=openai_server.base_url,
                         llm_model="fake", llm_timeout=1.0)
    openai_server.enqueue_stall(20, then="too late [1]")
    started = time.monotonic()
    answer = pipeline.ask(QUESTION)
    assert time.monotonic() - started < 6
    assert "offline answer" in answer.notice and "NUKIB" in answer.text


def test_unreachable_llm_gives_offline_answer(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=f"http://127.0.0.1:{free_port()}/v1",
                         llm_model="fake", llm_timeout=2.0)
    answer = pipeline.ask(QUESTION)
    assert "cannot connect" in answer.notice and "NUKIB" in answer.text


def test_refusal_and_invalid_input_make_no_llm_call(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    answer = openai_pipeline.ask("How many moons does Jupiter have?")
    assert answer.refused and not answer.sources
    with pytest.raises(InvalidQuestionError):
        openai_pipeline.ask("x" * 5000)
    assert openai_server.chat_requests == []


def test_llm_saying_it_does_not_know_gives_the_offline_answer(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    """The evidence and the reader found the answer (else the question is refused before the LLM is asked):
    a model that does not see it does not outweigh them."""
    openai_server.enqueue_text("I don't know based on the articles.")
    answer = openai_pipeline.ask(QUESTION)
    assert not answer.refused and "NUKIB" in answer.text and answer.sources
    assert "(it said the articles do not answer this)" in answer.notice
    assert answer.llm_use == "fallback: it said the articles do not answer this"


def test_follow_up_is_condensed_by_the_llm_before_retrieval(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue_text("Which German ministers attended the secret cabinet session on Huawei?")
    openai_server.enqueue_text("The foreign, interior, economy, finance and transport ministers attended [1].")
    history = [Turn("What did Germany decide about Huawei?", "The German cabinet held a secret session [1].")]
    answer = openai_pipeline.ask("and who attended?", history=history)
    condense, final = openai_server.chat_requests
    assert "Follow-up: and who attended?" in condense.all_text and "What did Germany decide" in condense.all_text
    assert "Question: Which German ministers attended the secret cabinet session on Huawei?" in final.user_text
    assert answer.sources[0].doc_id.startswith("003")
    assert "finance" in answer.text


def test_ollama_answerer(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    with FakeOllama() as server:
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="ollama", llm_base_url=server.base_url,
                             llm_model="llama3.1", llm_timeout=3.0)
        server.enqueue_text("NUKIB organises the meeting [1].")
        answer = pipeline.ask(QUESTION)
        assert answer.backend == "ollama:llama3.1" and answer.text == "NUKIB organises the meeting [1]."
        assert answer.sources and answer.sources[0].quote
        server.enqueue_error(status=500)
        assert "HTTP 500" in pipeline.ask(QUESTION).notice
        assert all(r.path == "/api/chat" for r in server.requests)  # no model-info round trips


def test_anthropic_answerer(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    with FakeAnthropic() as server:
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="anthropic", llm_base_url=server.base_url,
                             llm_model="claude-haiku-4-5", anthropic_api_key="ak-test", llm_timeout=1.0)
        server.enqueue_text("NUKIB organises the meeting [1].")
        answer = pipeline.ask(QUESTION)
        assert answer.backend == "anthropic:claude-haiku-4-5" and "NUKIB" in answer.text and answer.sources
        assert "untrusted DATA" in server.chat_requests[0].system_prompt
        server.enqueue_stall(20)
        started = time.monotonic()
        assert "offline answer" in pipeline.ask(QUESTION).notice
        assert time.monotonic() - started < 6


def _fence_of(request, doc_prefix: str = "NUKIB") -> tuple[str, int]:  # noqa: ANN001
    """The opening fence the prompt gave the excerpt mentioning `doc_prefix`, and its number."""
    import re

    for m in re.finditer(r'<source-[0-9a-f]+ n="(\d+)"[^>]*>', request.user_text):
        if doc_prefix in request.user_text[m.end():].split("</source")[0]:
            return m.group(0), int(m.group(1))
    raise AssertionError("no fence found")


def test_a_reply_that_echoes_a_source_fence_is_not_taken_for_a_prompt_leak(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    # Measured with gemma-3-270m on llama.cpp's server: the reply opened with a copy of a fence, whose tag
    # also stands in the system prompt; it used to be discarded as "repeated the system prompt".
    def echo_then_answer(request) -> str:  # noqa: ANN001
        fence, n = _fence_of(request)
        return f'{fence}\nThe meeting is organised by NUKIB: "{REAL_QUOTE}" [{n}].\n</source-x>'

    openai_server.enqueue(echo_then_answer)
    answer = openai_pipeline.ask(QUESTION)
    assert answer.backend == "openai:fake" and not answer.notice
    assert answer.text == f'The meeting is organised by NUKIB: "{REAL_QUOTE}" [1].'
    assert answer.sources[0].doc_id.startswith("002")


def test_a_reply_that_only_copies_a_source_says_so(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue(lambda request: f"{_fence_of(request)[0]}\nUS and Poland sign cooperation agreement on 5G networks")
    answer = openai_pipeline.ask(QUESTION)
    assert answer.backend.startswith("extractive (fallback")
    assert "(it echoed a source instead of answering)" in answer.notice and answer.to_json()["notice"] == answer.notice
    openai_server.enqueue(lambda request: _fence_of(request)[0])
    assert "(it only echoed source markup)" in openai_pipeline.ask(QUESTION).notice


def test_a_reply_that_repeats_the_rules_is_still_a_leak(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue(lambda request: request.system_prompt.split("\n\n")[0] + " NUKIB organises it [1].")
    answer = openai_pipeline.ask(QUESTION)
    assert "(the reply repeated its instructions)" in answer.notice


def test_text_after_an_invented_turn_is_cut(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    openai_server.enqueue(lambda request: f'NUKIB organises it: "{REAL_QUOTE}" [{_fence_of(request)[1]}].'
                          "<|im_end|>\n<|im_start|>user\nWhat else? [2]")
    answer = openai_pipeline.ask(QUESTION)
    assert answer.backend == "openai:fake" and answer.text == f'NUKIB organises it: "{REAL_QUOTE}" [1].'
    assert [s.n for s in answer.sources] == [1]
    stop = openai_server.chat_requests[-1].json["stop"]
    assert "<|im_end|>" in stop and "<end_of_turn>" in stop and len(stop) <= 4  # the OpenAI API takes 4


def test_streamed_deltas_reach_on_token_and_the_answer_is_the_grounded_reply(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    from .fakes.llm_servers import Reply

    reply = f'NUKIB organises the meeting: "{REAL_QUOTE}" [1].'
    openai_server.enqueue(lambda request: Reply.text(reply.replace("[1]", f"[{_fence_of(request)[1]}]"), chunk_delay=0.05))
    deltas: list[str] = []
    answer = openai_pipeline.ask(QUESTION, on_token=deltas.append)
    assert len(deltas) > 3 and "".join(deltas).startswith("NUKIB organises")
    assert answer.text == reply and answer.sources[0].doc_id.startswith("002")
    assert openai_server.chat_requests[-1].stream is True


def test_a_failing_on_token_listener_does_not_cost_the_answer(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    def broken(delta: str) -> None:
        raise RuntimeError("display gone")

    openai_server.enqueue(lambda request: f'NUKIB: "{REAL_QUOTE}" [{_fence_of(request)[1]}].')
    answer = openai_pipeline.ask(QUESTION, on_token=broken)
    assert answer.backend == "openai:fake" and answer.sources


def test_a_local_model_reads_the_best_sentences_not_whole_chunks(openai_server: FakeOpenAI, built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    """QABOT_LLM_EXCERPTS=sentences (the default for llamacpp and ollama): the best evidence sentences with their
    neighbours, grouped by article; the answer is still cited to the chunk that holds it."""
    prompts = {}
    for mode in ("chunks", "sentences"):
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=openai_server.base_url,
                                 llm_model="fake", openai_api_key="sk-test-key", llm_timeout=3.0, llm_excerpts=mode)
        openai_server.enqueue(lambda request: "NUKIB, the Czech cybersecurity agency, organises the meeting.")
        answer = pipeline.ask(QUESTION)
        prompts[mode] = openai_server.chat_requests[-1].user_text
        assert answer.backend == "openai:fake" and answer.llm_use == "attributed", answer
        assert answer.text.endswith("[1].") and "NUKIB" in answer.sources[0].quote
    assert "chief of cabinet at Czech cybersecurity agency NUKIB" in prompts["sentences"]
    assert len(prompts["sentences"]) < 0.7 * len(prompts["chunks"]), (len(prompts["sentences"]), len(prompts["chunks"]))


def test_a_citation_to_the_wrong_source_is_moved_to_the_one_that_says_it(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    def reply(request) -> str:  # noqa: ANN001
        nukib = _fence_of(request)[1]
        wrong = next(i for i in range(1, 9) if f'n="{i}"' in request.user_text and i != nukib)
        return f"Kahofer is chief of cabinet at the Czech cybersecurity agency NUKIB [{wrong}]."

    openai_server.enqueue(reply)
    answer = openai_pipeline.ask(QUESTION)
    assert answer.llm_use == "attributed" and answer.text.endswith("[1].")
    assert "chief of cabinet at Czech cybersecurity agency NUKIB" in answer.sources[0].quote


def test_a_citation_written_in_words_cites_its_own_sentence(openai_server: FakeOpenAI, openai_pipeline: QAPipeline) -> None:
    """Qwen wrote "According to source 2, Huawei warned…" (recorded): the "2" is a citation, not a number the
    article must hold, and it cites the sentence it opens."""
    def reply(request) -> str:  # noqa: ANN001
        nukib = _fence_of(request)[1]
        return (f"According to source {nukib}, Kahofer is chief of cabinet at the Czech cybersecurity agency NUKIB. "
                f"The meeting is in Prague (excerpt {nukib}).")

    openai_server.enqueue(reply)
    answer = openai_pipeline.ask(QUESTION)
    assert answer.llm_use in ("as written", "attributed"), answer.notice
    assert answer.text.startswith("Kahofer is chief of cabinet at the Czech cybersecurity agency NUKIB [1]."), answer.text
    assert "source" not in answer.text.lower() and "excerpt" not in answer.text.lower()


def test_a_packaged_model_is_joined_once_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A GGUF uploaded to PyPI in parts (the qwen extra): joined into the cache, its sha256 checked."""
    import hashlib
    import sys

    from rag.answer import packaged_gguf
    from rag.errors import SettingsError

    site = tmp_path / "site"
    chunks = [b"GGUF" + b"a" * 1000, b"b" * 777]
    for i, data in enumerate(chunks, start=1):
        (site / f"fakepart{i}" / "data").mkdir(parents=True)
        (site / f"fakepart{i}" / "__init__.py").write_text("")
        (site / f"fakepart{i}" / "data" / f"part{i:02d}.bin").write_bytes(data)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(packaged_gguf, "CACHE", tmp_path / "cache")
    model = packaged_gguf.PackagedGGUF("fake-model", "fake.gguf", hashlib.sha256(b"".join(chunks)).hexdigest(),
                                       (("fakepart1", "part01.bin"), ("fakepart2", "part02.bin")), extra="fake")
    path = model.path()
    assert path.read_bytes() == b"".join(chunks) and model.path() == path
    damaged = packaged_gguf.PackagedGGUF("fake-model", "other.gguf", "0" * 64, model.parts, extra="fake")
    with pytest.raises(SettingsError, match=r"does not match its sha256 .*pip install --force-reinstall -e '\.\[fake\]'"):
        damaged.path()
    assert not (tmp_path / "cache" / "other.gguf").exists() and not list((tmp_path / "cache").glob(".*part"))
    missing = packaged_gguf.PackagedGGUF("absent", "absent.gguf", "0" * 64, (("nosuchpart1", "part01.bin"),), extra="qwen")
    with pytest.raises(SettingsError, match=r"not installed: pip install -e '\.\[qwen\]'"):
        missing.path()
    (tmp_path / "a-file").write_text("")
    monkeypatch.setattr(packaged_gguf, "CACHE", tmp_path / "a-file" / "cache")  # not a folder one can write
    with pytest.raises(SettingsError, match=r"cannot join the fake-model model into .*XDG_CACHE_HOME"):
        model.path()
    sys.modules.pop("fakepart1", None)
    sys.modules.pop("fakepart2", None)


@pytest.mark.parametrize("backend", ["openai", "ollama"])
def test_a_structured_reply_follows_the_schema_and_streams_only_its_answer(backend: str, built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    """QABOT_LLM_STRUCTURED=true: the {answer, sources} schema goes where the API takes it (OpenAI's
    response_format, Ollama's format); the user watches the answer field being written, never the JSON around it."""
    with (FakeOpenAI() if backend == "openai" else FakeOllama()) as server:
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer=backend, llm_base_url=server.base_url,
                                 llm_model="fake", openai_api_key="sk-test-key", llm_timeout=3.0, llm_structured=True)

        def reply(request) -> str:  # noqa: ANN001
            n = _fence_of(request)[1]
            return ('{"answer": "Robert Kahofer is chief of cabinet at the Czech cybersecurity agency NUKIB.", '
                    f'"sources": [{n}]}}')

        server.enqueue(lambda request: Reply.text(reply(request), chunks=_pieces(reply(request), 7)))
        shown: list[str] = []
        answer = pipeline.ask(QUESTION, on_token=shown.append)
        request = server.chat_requests[-1].json
        schema = (request["response_format"]["json_schema"]["schema"] if backend == "openai" else request["format"])
        if backend == "openai":
            assert request["response_format"]["type"] == "json_schema"
        assert schema["type"] == "object" and set(schema["required"]) == {"answer", "sources"}
        assert "JSON object" in server.chat_requests[-1].system_prompt
        assert answer.text == "Robert Kahofer is chief of cabinet at the Czech cybersecurity agency NUKIB [1].", answer.text
        assert answer.llm_use == "as written"
        streamed = "".join(shown)
        assert streamed.startswith("Robert Kahofer is chief") and "{" not in streamed and "sources" not in streamed
        server.enqueue_text('{"answer": ')
        assert "(malformed reply)" in pipeline.ask(QUESTION).notice  # nothing of the answer was written


def test_anthropic_gets_no_schema_and_its_reply_is_read_as_text(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    """Anthropic's API has no schema-constrained decoding: QABOT_LLM_STRUCTURED leaves its requests and replies as they were."""
    with FakeAnthropic() as server:
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, answerer="anthropic", llm_base_url=server.base_url,
                                 llm_model="claude-haiku-4-5", anthropic_api_key="ak-test", llm_timeout=3.0,
                                 llm_structured=True)
        server.enqueue_text("NUKIB organises the meeting [1].")
        answer = pipeline.ask(QUESTION)
        request = server.chat_requests[-1]
        assert "JSON object" not in request.system_prompt and "format" not in request.json
        assert answer.text.startswith("NUKIB organises the meeting [") and answer.llm_use in ("as written", "attributed")


def _pieces(text: str, size: int) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]
