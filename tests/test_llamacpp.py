"""The LLM path against a real model: gemma-3-270m run by llama.cpp, in process and over HTTP.

A 270M-parameter model invents freely; that is the point. Whatever it writes, what a user is
shown must hold: no quote presented as verified that is not in its article, no citation to a
source that is not listed, no chat-template or fence markup, and a notice saying why when its
reply was not used. Replies are short (32 tokens) and few, so the module stays within a couple
of minutes on two busy cores.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import pytest

from rag.answer.gguf_file import ModelFileError
from rag.answer.grounding import UNVERIFIED_MARK
from rag.answer.llm import LLMAnswerer
from rag.answer.prompts import TURN_MARKERS
from rag.errors import QabotError, SettingsError
from rag.pipeline import QAPipeline
from rag.quotes import verify_quote
from rag.settings import load_settings
from rag.types import Answer

from .conftest import CORPUS, DEV_QUESTIONS, REAL_LLM_SETTINGS, assert_one_line_error, open_pipeline, run_qabot
from .real_llm import llama_server

pytestmark = [pytest.mark.timeout(300), pytest.mark.slow]

DEV = [json.loads(line)["question"] for line in DEV_QUESTIONS.read_text(encoding="utf-8").splitlines() if line.strip()]
FENCE = re.compile(r"</?source", re.I)


def article(pipeline: QAPipeline, doc_id: str) -> str:
    return " ".join(c.text for c in pipeline.index.store.get_document(doc_id))


def assert_shown_answer_holds(answer: Answer, pipeline: QAPipeline, llm_name: str) -> None:
    """What the user sees from a real model's turn is grounded, whatever the model wrote."""
    shown = " ".join([answer.text, answer.notice, *(s.quote for s in answer.sources)])
    assert not any(marker in shown for marker in TURN_MARKERS), shown
    assert not FENCE.search(shown), shown
    assert answer.backend in (llm_name, f"extractive (fallback from {llm_name})"), answer.backend
    if answer.backend != llm_name:  # the reply was not used: the user is told why
        assert answer.notice.startswith(f"The {llm_name} model did not give a usable answer (") and "offline answer" in answer.notice
    numbers = {s.n for s in answer.sources}
    for cited in re.findall(r"\[(\d+)\]", answer.text):
        assert int(cited) in numbers, (cited, answer.text)
    for source in answer.sources:  # every quote listed under a source stands in that article
        assert source.quote and verify_quote(source.quote, article(pipeline, source.doc_id)), source
    cited_text = " ".join(article(pipeline, s.doc_id) for s in answer.sources)
    for m in re.finditer(r"[\"“]([^\"“”]{8,}?)[\"”]", answer.text):  # quotes in the text: verified or marked
        if not answer.text[m.end():].startswith(UNVERIFIED_MARK):
            assert verify_quote(m.group(1).replace("**", ""), cited_text), m.group(0)  # ** marks the answer span


class Tokens:
    """An `on_token` listener that remembers what arrived, when, and on which thread."""

    def __init__(self) -> None:
        self.deltas: list[str] = []
        self.times: list[float] = []
        self.threads: set[str] = set()

    def __call__(self, delta: str) -> None:
        self.deltas.append(delta)
        self.times.append(time.monotonic())
        self.threads.add(threading.current_thread().name)


def test_llamacpp_answers_stream_and_what_is_shown_is_grounded(llamacpp_pipeline: QAPipeline) -> None:
    client = llamacpp_pipeline.llm.client
    name = llamacpp_pipeline.backend_name()
    assert name == "llamacpp:gemma-3-270m-q4_k_m"
    assert client.chat_template == "gemma"  # the GGUF has none; llama.cpp's ChatML fallback made it write "<|im_end|>"
    most_deltas = 0
    for question in DEV[:2]:
        tokens = Tokens()
        answer = llamacpp_pipeline.ask(question, on_token=tokens)
        returned = time.monotonic()
        assert_shown_answer_holds(answer, llamacpp_pipeline, name)
        assert answer.to_json()["notice"] == answer.notice
        most_deltas = max(most_deltas, len(tokens.deltas))
        if tokens.deltas:
            assert threading.current_thread().name not in tokens.threads  # from a worker, as documented
            assert max(tokens.times) <= returned
            assert not any(m in "".join(tokens.deltas) for m in ("<|im_end|>", "<end_of_turn>"))  # stop strings held
    assert most_deltas > 1  # the reply came in pieces as it was generated, not in one block at the end


def test_two_questions_at_once_each_get_their_own_grounded_answer(llamacpp_pipeline: QAPipeline) -> None:
    questions = [DEV[3], DEV[6]]
    answers: dict[str, Answer] = {}

    def ask(q: str) -> None:
        answers[q] = llamacpp_pipeline.ask(q)

    threads = [threading.Thread(target=ask, args=(q,)) for q in questions]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=200)
    assert set(answers) == set(questions)
    for q, answer in answers.items():
        assert answer.question == q
        assert_shown_answer_holds(answer, llamacpp_pipeline, llamacpp_pipeline.backend_name())
        assert {s.doc_id for s in answer.sources} <= set(answer.retrieved)  # no source of the other question


def _quiet_within(seconds: float, window: float = 0.5, quiet_cpu: float = 0.1) -> float:
    """Seconds until this process used under `quiet_cpu` CPU-seconds in a `window`; inf if it never did."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        before = time.process_time()
        time.sleep(window)
        if time.process_time() - before < quiet_cpu:
            return time.monotonic() - started
    return float("inf")


def test_a_generation_past_the_timeout_is_stopped_not_left_running(llamacpp_pipeline: QAPipeline) -> None:
    settings = llamacpp_pipeline.settings.replace(llm_timeout=1.0, llm_max_tokens=4000)
    impatient = QAPipeline(settings, llamacpp_pipeline.index, LLMAnswerer(llamacpp_pipeline.llm.client, settings))
    tokens = Tokens()
    started = time.monotonic()
    answer = impatient.ask(DEV[0], on_token=tokens)
    assert time.monotonic() - started < 1.0 + 2.0 + 5.0  # the deadline, the hard grace, the offline answer
    assert "no reply within 1 s" in answer.notice and answer.sources
    seen = len(tokens.deltas)
    # The prompt batch being processed at the deadline is finished, then llama.cpp stops; left running,
    # 4,000 tokens would keep the cores busy for a minute or more.
    assert _quiet_within(8.0) < 8.0, "llama.cpp kept generating after the answer was given"
    before = time.process_time()
    time.sleep(1.0)
    assert time.process_time() - before < 0.15, "llama.cpp started again"
    assert len(tokens.deltas) == seen  # and nothing more streams
    assert llamacpp_pipeline.ask(DEV[1]).sources  # the model is free for the next question


def _listening_tcp_inodes() -> set[str]:
    """Socket inodes of this process that listen on TCP (IPv4 or IPv6), from /proc."""
    mine = set()
    for fd in Path("/proc/self/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            mine.add(target[8:-1])
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening.add(fields[9])
    return mine & listening


def test_the_in_process_model_opens_no_tcp_port(gemma_model: Path) -> None:
    from rag.answer.llamacpp import LlamaCpp

    before = _listening_tcp_inodes()
    client = LlamaCpp.from_settings(load_settings(environ={}, answerer="llamacpp", llm_model=str(gemma_model),
                                                  llm_threads=1, max_concurrent=1, llm_context=1024))
    try:
        assert _listening_tcp_inodes() == before
        assert client.listening_address.startswith("unix://")
        socket_dir = Path(client.listening_address.removeprefix("unix://")).parent
        assert socket_dir.stat().st_mode & 0o777 == 0o700
    finally:
        client.close()
    assert not socket_dir.exists()


def _gguf(path: Path, arch: str) -> Path:
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize(
    ("make", "overrides", "error", "needle"),
    [
        (lambda tmp, real: tmp / "missing.gguf", {}, ModelFileError, "no such file"),
        (lambda tmp, real: tmp, {}, ModelFileError, "is not a file"),
        (lambda tmp, real: (tmp / "notes.gguf").write_text("hello") and tmp / "notes.gguf", {}, ModelFileError,
         "is not a GGUF file"),
        (lambda tmp, real: (tmp / "cut.gguf").write_bytes(real.read_bytes()[: 20_000_000]) and tmp / "cut.gguf", {},
         ModelFileError, "is incomplete (20 of 253 MB)"),
        (lambda tmp, real: _gguf(tmp / "odd.gguf", "nosucharch"), {}, ModelFileError, "cannot run the 'nosucharch' architecture"),
        (lambda tmp, real: real, {"llm_context": 1_000_000}, SettingsError, "not enough memory for gemma-3-270m-q4_k_m.gguf"),
        (lambda tmp, real: real, {"llm_chat_template": "nonsense"}, SettingsError,
         "QABOT_LLM_CHAT_TEMPLATE='nonsense' is not a chat template llama.cpp knows"),
    ],
    ids=["missing", "folder", "not-gguf", "truncated", "architecture", "out-of-memory", "template"],
)
def test_a_model_that_cannot_run_is_refused_with_one_clear_line(tmp_path: Path, gemma_model: Path, make, overrides, error, needle) -> None:  # noqa: ANN001
    from rag.answer.registry import build_llm_answerer

    settings = load_settings(environ={}, answerer="llamacpp", llm_model=str(make(tmp_path, gemma_model)), llm_threads=1,
                             **overrides)
    with pytest.raises(error) as caught:
        build_llm_answerer(settings)
    message = str(caught.value)
    assert needle in message and "\n" not in message and isinstance(caught.value, QabotError)


def test_cli_without_a_model_file_says_so_in_one_line(tmp_path: Path, built_data_dir: Path) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir), "QABOT_ANSWERER": "llamacpp"}
    assert_one_line_error(run_qabot("ask", "Who signed it?", env=env), 2, "needs QABOT_LLM_MODEL=/path/to/model.gguf")
    env["QABOT_LLM_MODEL"] = str(tmp_path / "nowhere.gguf")
    assert_one_line_error(run_qabot("ask", "Who signed it?", env=env), 2, "nowhere.gguf: no such file")


def test_ask_json_with_the_real_model_answers_within_the_timeout(gemma_model: Path, built_data_dir: Path, pipeline: QAPipeline) -> None:
    env = {"QABOT_CORPUS_DIR": str(CORPUS), "QABOT_DATA_DIR": str(built_data_dir), "QABOT_ANSWERER": "llamacpp",
           "QABOT_LLM_MODEL": str(gemma_model), "QABOT_LLM_MAX_TOKENS": "24", "QABOT_TOP_K": "2",
           "QABOT_LLM_TIMEOUT": "60", "QABOT_LLM_THREADS": "2"}
    questions = [DEV[0], DEV[4]]
    result = run_qabot("ask", "--json", env=env, input="\n".join(questions) + "\n", timeout=280)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["question"] for r in rows] == questions
    for row in rows:
        assert row["backend"] in ("llamacpp:gemma-3-270m-q4_k_m", "extractive (fallback from llamacpp:gemma-3-270m-q4_k_m)")
        assert row["timings_ms"]["answer"] < 60_000 + 5_000
        if row["backend"].startswith("extractive (fallback"):
            assert row["notice"].startswith("The llamacpp:gemma-3-270m-q4_k_m model did not give a usable answer (")
        for source in row["sources"]:
            assert verify_quote(source["quote"], article(pipeline, source["doc_id"])), source


def test_openai_answerer_against_llama_cpps_own_server(gemma_model: Path, built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    with llama_server(gemma_model, api_key="sk-local-test") as base_url:
        assert base_url.startswith("http://127.0.0.1:")
        llm = open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=base_url,
                            openai_api_key="sk-local-test", llm_model="gemma-3-270m", **REAL_LLM_SETTINGS)
        streamed = 0
        for question in (DEV[0], DEV[2]):
            tokens = Tokens()
            answer = llm.ask(question, on_token=tokens)
            assert_shown_answer_holds(answer, llm, "openai:gemma-3-270m")
            assert "HTTP 401" not in answer.notice  # the key went along
            # Its reply to this prompt opened with a copy of a source fence; that is no longer taken for a prompt leak.
            streamed += bool(tokens.deltas)
        assert streamed
        wrong_key = open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=base_url,
                                  openai_api_key="sk-wrong", llm_model="gemma-3-270m", **REAL_LLM_SETTINGS)
        assert "HTTP 401" in wrong_key.ask(DEV[0]).notice


def test_a_structured_reply_is_json_of_the_schema_even_from_a_base_model(llamacpp_pipeline: QAPipeline) -> None:
    """QABOT_LLM_STRUCTURED=true in process: llama.cpp turns the schema into a grammar, so even the 270M base
    model (which otherwise repeats its rules) can only write the {answer, sources} object."""
    client = llamacpp_pipeline.llm.client
    structured = LLMAnswerer(client, llamacpp_pipeline.settings.replace(llm_structured=True, llm_max_tokens=60))
    raws: list[str] = []
    stream = client.stream

    def recording(messages, generation):  # noqa: ANN001, ANN202
        raws.append(stream(messages, generation))
        return raws[-1]

    client.stream = recording
    original, llamacpp_pipeline.llm = llamacpp_pipeline.llm, structured
    try:
        answer = llamacpp_pipeline.ask(DEV[0])
    finally:
        llamacpp_pipeline.llm = original
        del client.stream
    assert len(raws) == 1, answer
    raw = raws[0]
    assert raw.lstrip().startswith("{"), raw
    if not raw.rstrip().endswith("}"):  # cut at the token limit: the answer written so far is kept
        assert answer.backend.startswith(("extractive (fallback", "llamacpp")), answer
        return
    data = json.loads(raw)
    assert set(data) == {"answer", "sources"} and isinstance(data["answer"], str)
    assert all(isinstance(n, int) for n in data["sources"])
