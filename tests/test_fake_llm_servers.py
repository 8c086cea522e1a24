"""The fake LLM provider servers work with the real llama-index clients and SDKs.

Each llama-index client (OpenAILike, Ollama, Anthropic) is pointed at its fake on
127.0.0.1 and must get scripted text back through ``.chat()`` and ``.stream_chat()``,
raise on scripted failures, and time out on stalls within a bounded time.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import socket
import threading
import time
import typing
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable

import httpx
import pytest

from llama_index.core.llms import ChatMessage

from tests.fakes.llm_servers import (
    FakeAnthropic,
    FakeLLMServer,
    FakeOllama,
    FakeOpenAI,
    RecordedRequest,
    Reply,
    make_fake_server,
    split_chunks,
)

pytestmark = pytest.mark.timeout(60)

CLIENT_TIMEOUT = 0.5  # seconds; every stall below is much longer than this
SYSTEM = "SYSTEM-MARKER: answer only from the articles."
QUESTION = "Who won the match?"
MESSAGES = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content=QUESTION)]

# --------------------------------------------------------------------------- per-provider wiring


def _transport_errors() -> tuple[type[BaseException], ...]:
    errs: list[type[BaseException]] = [httpx.TransportError]
    try:
        import httpx2  # the anthropic SDK >= 1.0 uses httpx2

        errs.append(httpx2.TransportError)
    except ImportError:  # pragma: no cover
        pass
    import openai

    errs.append(openai.APIConnectionError)  # includes APITimeoutError
    try:
        import anthropic

        errs.append(anthropic.APIConnectionError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errs)


TRANSPORT_ERRORS = _transport_errors()


ANTHROPIC_MODEL = "claude-haiku-4-5"


def _llama_anthropic_compatible(model: str) -> tuple[bool, str]:
    """llama-index-llms-anthropic 0.12.3 builds ``MessageParam(...)`` and passes
    ``temperature=`` (except for the models in ANTHROPIC_NO_TEMP_MODELS).
    anthropic>=2 made MessageParam a Union (TypeError before any request) and
    anthropic>=1 dropped ``temperature`` from messages.create (TypeError)."""
    import anthropic
    from anthropic.resources.messages import Messages
    from anthropic.types import MessageParam
    from llama_index.llms.anthropic.utils import ANTHROPIC_NO_TEMP_MODELS

    if typing.get_origin(MessageParam) is typing.Union:
        return False, f"anthropic {anthropic.__version__}: MessageParam is a Union"
    sends_temperature = not any(m in model for m in ANTHROPIC_NO_TEMP_MODELS)
    if sends_temperature and "temperature" not in inspect.signature(Messages.create).parameters:
        return False, f"anthropic {anthropic.__version__}: messages.create() has no temperature"
    return True, ""


ANTHROPIC_OK, ANTHROPIC_WHY = _llama_anthropic_compatible(ANTHROPIC_MODEL)


@dataclass
class Provider:
    name: str
    server_cls: type[FakeLLMServer]
    make_llm: Callable[[FakeLLMServer, float], Any]
    http_error: tuple[type[BaseException], ...]  # raised for a 500 / 429
    timeout_error: tuple[type[BaseException], ...]
    stream_error: tuple[type[BaseException], ...]  # error event inside a 200 stream

    def status_of(self, exc: BaseException) -> int:
        return getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)


def _openai_provider() -> Provider:
    import openai
    from llama_index.llms.openai_like import OpenAILike

    return Provider(
        name="openai",
        server_cls=FakeOpenAI,
        make_llm=lambda s, t: OpenAILike(api_base=s.base_url, api_key="test", model="fake",
                                         is_chat_model=True, timeout=t, max_retries=0),
        http_error=(openai.APIStatusError,),
        # a stall before the headers -> openai.APITimeoutError; a stall mid-stream
        # -> raw httpx.ReadTimeout (the SDK does not wrap errors raised while iterating)
        timeout_error=(openai.APITimeoutError, httpx.TimeoutException),
        stream_error=(openai.APIError,),
    )


def _ollama_provider() -> Provider:
    import ollama
    from llama_index.llms.ollama import Ollama

    return Provider(
        name="ollama",
        server_cls=FakeOllama,
        make_llm=lambda s, t: Ollama(base_url=s.base_url, model="fake", request_timeout=t),
        http_error=(ollama.ResponseError,),
        timeout_error=(httpx.TimeoutException,),  # the ollama client does not wrap timeouts
        stream_error=(ollama.ResponseError,),
    )


def _anthropic_provider() -> Provider:
    import anthropic
    from llama_index.llms.anthropic import Anthropic

    timeout_errors: list[type[BaseException]] = [anthropic.APITimeoutError, httpx.TimeoutException]
    try:
        import httpx2

        timeout_errors.append(httpx2.TimeoutException)
    except ImportError:  # pragma: no cover
        pass
    return Provider(
        name="anthropic",
        server_cls=FakeAnthropic,
        make_llm=lambda s, t: Anthropic(api_key="test", model=ANTHROPIC_MODEL, base_url=s.base_url,
                                        timeout=t, max_retries=0),
        http_error=(anthropic.APIStatusError,),
        timeout_error=tuple(timeout_errors),
        stream_error=(anthropic.APIStatusError,),
    )


PROVIDERS = [
    pytest.param(_openai_provider(), id="openai"),
    pytest.param(_ollama_provider(), id="ollama"),
    pytest.param(
        _anthropic_provider(),
        id="anthropic",
        # With the installed anthropic SDK, llama-index's Anthropic fails before any HTTP
        # request; the raw-SDK tests further down still prove the fake's protocol.  When
        # the SDK is pinned to a compatible version these run (and must pass).
        marks=pytest.mark.xfail(not ANTHROPIC_OK, reason=f"llama-index-llms-anthropic 0.12.3 "
                                f"is incompatible: {ANTHROPIC_WHY}", raises=TypeError, strict=True),
    ),
]


@pytest.fixture(params=PROVIDERS)
def provider(request) -> Provider:
    return request.param


@pytest.fixture
def server(provider: Provider):
    with provider.server_cls() as srv:
        yield srv


@pytest.fixture
def llm(provider: Provider, server: FakeLLMServer):
    return provider.make_llm(server, CLIENT_TIMEOUT)


def _stream_text(llm) -> tuple[str, list[str]]:
    deltas, last = [], None
    for r in llm.stream_chat(MESSAGES):
        deltas.append(r.delta or "")
        last = r
    assert last is not None
    return last.message.content, [d for d in deltas if d]


# --------------------------------------------------------------------------- llama-index clients


def test_chat_returns_scripted_text(server, llm):
    assert server.chat_requests == []  # "no LLM call was made" is checkable
    server.enqueue("The home team won 2-1.")
    resp = llm.chat(MESSAGES)
    assert resp.message.content == "The home team won 2-1."
    (req,) = server.chat_requests
    assert req.stream is False
    assert SYSTEM in req.system_prompt
    assert QUESTION in req.user_text
    assert req.json["model"]


def test_stream_chat_returns_scripted_chunks(server, llm):
    server.enqueue_text("Alpha beta gamma.", chunks=["Alpha ", "beta ", "gamma."])
    content, deltas = _stream_text(llm)
    assert content == "Alpha beta gamma."
    assert deltas == ["Alpha ", "beta ", "gamma."]
    (req,) = server.chat_requests
    assert req.stream is True
    assert SYSTEM in req.system_prompt


def test_queue_order_then_default_reply(server, llm):
    server.enqueue("first", "second")
    assert server.pending == 2
    assert llm.chat(MESSAGES).message.content == "first"
    assert _stream_text(llm)[0] == "second"
    assert llm.chat(MESSAGES).message.content == server.default_reply.content
    assert server.pending == 0
    assert [r.stream for r in server.chat_requests] == [False, True, False]


def test_http_500_raises(provider, server, llm):
    server.enqueue_error(500, "kaboom")
    with pytest.raises(provider.http_error) as ei:
        llm.chat(MESSAGES)
    assert provider.status_of(ei.value) == 500
    assert "kaboom" in str(ei.value)
    # the server is still fine afterwards
    server.enqueue("recovered")
    assert llm.chat(MESSAGES).message.content == "recovered"


def test_http_500_raises_when_streaming(provider, server, llm):
    server.enqueue_error(500)
    with pytest.raises(provider.http_error):
        _stream_text(llm)


def test_http_429_raises_with_retry_after(provider, server, llm):
    server.enqueue_rate_limit(retry_after=7)
    with pytest.raises(provider.http_error) as ei:
        llm.chat(MESSAGES)
    assert provider.status_of(ei.value) == 429
    response = getattr(ei.value, "response", None)
    if response is not None:  # ollama.ResponseError keeps no headers
        assert response.headers["retry-after"] == "7"


def test_stall_beyond_timeout_raises_quickly(provider, server, llm):
    server.enqueue_stall(10, then="too late")
    t0 = time.monotonic()
    with pytest.raises(provider.timeout_error):
        llm.chat(MESSAGES)
    elapsed = time.monotonic() - t0
    assert CLIENT_TIMEOUT * 0.8 <= elapsed < CLIENT_TIMEOUT + 2.5
    # The stalled handler notices the disconnect; the next request is served normally.
    server.enqueue("after the stall")
    assert llm.chat(MESSAGES).message.content == "after the stall"


def test_stall_mid_stream_raises_quickly(provider, server, llm):
    server.enqueue_stall(10, then="one two three", after_chunks=1)
    got: list[str] = []
    t0 = time.monotonic()
    with pytest.raises(provider.timeout_error):
        for r in llm.stream_chat(MESSAGES):
            got.append(r.delta or "")
    assert time.monotonic() - t0 < CLIENT_TIMEOUT + 2.5
    assert "one " in got


def test_short_stall_is_served(server, llm):
    server.enqueue_stall(0.1, then="worth the wait")
    assert llm.chat(MESSAGES).message.content == "worth the wait"


def test_cut_stream_raises(server, llm):
    server.enqueue_cut("one two three four", after_chunks=2)
    got: list[str] = []
    with pytest.raises(TRANSPORT_ERRORS):
        for r in llm.stream_chat(MESSAGES):
            got.append(r.delta or "")
    assert "".join(got) == "one two "


def test_cut_non_streaming_body_raises(server, llm):
    server.enqueue_cut("one two three four")
    with pytest.raises(TRANSPORT_ERRORS):
        llm.chat(MESSAGES)


def test_malformed_json_raises(server, llm):
    server.enqueue_malformed("<html>not json</html>")
    with pytest.raises(ValueError):  # json.JSONDecodeError, not wrapped by any SDK
        llm.chat(MESSAGES)


def test_malformed_stream_raises(server, llm):
    server.enqueue_malformed()
    with pytest.raises(ValueError):
        _stream_text(llm)


def test_error_inside_stream_raises(provider, server, llm):
    server.enqueue_stream_error("overloaded mid-stream", text="partial answer here", after_chunks=1)
    with pytest.raises(provider.stream_error) as ei:
        _stream_text(llm)
    assert "overloaded mid-stream" in str(ei.value)


def test_async_chat_and_stream(server, llm):
    async def go():
        server.enqueue("async reply", "async streamed reply")
        r = await llm.achat(MESSAGES)
        chunks = [c.delta async for c in await llm.astream_chat(MESSAGES)]
        server.enqueue_stall(10)
        t0 = time.monotonic()
        with pytest.raises(Exception) as ei:
            await llm.achat(MESSAGES)
        return r.message.content, "".join(d or "" for d in chunks), ei.value, time.monotonic() - t0

    text, streamed, exc, elapsed = asyncio.run(go())
    assert text == "async reply"
    assert streamed == "async streamed reply"
    assert isinstance(exc, TRANSPORT_ERRORS + (httpx.TimeoutException,)), repr(exc)
    assert elapsed < CLIENT_TIMEOUT + 2.5


def test_callable_responder_sees_the_request(server, llm):
    server.enqueue(lambda req: f"you asked: {req.user_text}")
    assert llm.chat(MESSAGES).message.content == f"you asked: {QUESTION}"


# --------------------------------------------------------------------------- client quirks worth knowing


def test_openai_timeout_is_per_read_not_total():
    """``timeout`` bounds each socket read, not the whole answer: a slow trickle
    of chunks never trips it.  Callers need their own overall deadline."""
    from llama_index.llms.openai_like import OpenAILike

    with FakeOpenAI() as srv:
        llm = OpenAILike(api_base=srv.base_url, api_key="t", model="fake", is_chat_model=True,
                         timeout=0.5, max_retries=0)
        srv.enqueue_text("a b c d", chunk_delay=0.3)
        t0 = time.monotonic()
        content, _ = _stream_text(llm)
        assert content == "a b c d"
        assert time.monotonic() - t0 > 0.8  # longer than the 0.5 s "timeout"


def test_openai_sdk_honours_retry_after_when_retrying():
    from llama_index.llms.openai_like import OpenAILike

    with FakeOpenAI() as srv:
        llm = OpenAILike(api_base=srv.base_url, api_key="t", model="fake", is_chat_model=True,
                         timeout=5, max_retries=1)
        srv.enqueue_rate_limit(retry_after=1)
        srv.enqueue("second try")
        t0 = time.monotonic()
        assert llm.chat(MESSAGES).message.content == "second try"
        assert time.monotonic() - t0 >= 0.9
        assert [r.header("x-stainless-retry-count") for r in srv.chat_requests] == ["0", "1"]


def test_ollama_client_calls_api_show_for_context_window():
    from llama_index.llms.ollama import Ollama

    with FakeOllama(context_length=4096) as srv:
        llm = Ollama(base_url=srv.base_url, model="fake", request_timeout=5)
        llm.chat(MESSAGES)
        llm.chat(MESSAGES)
        assert [r.path for r in srv.requests] == ["/api/show", "/api/chat", "/api/chat"]
        assert llm.context_window == 4096
        assert srv.chat_requests[0].json["options"]["num_ctx"] == 4096
        # with an explicit context window there is no /api/show call
        srv.reset()
        Ollama(base_url=srv.base_url, model="fake", request_timeout=5, context_window=2048).chat(MESSAGES)
        assert [r.path for r in srv.requests] == ["/api/chat"]


def test_openai_like_completion_endpoint():
    """OpenAILike defaults to is_chat_model=False and then uses /v1/completions."""
    from llama_index.llms.openai_like import OpenAILike

    with FakeOpenAI() as srv:
        llm = OpenAILike(api_base=srv.base_url, api_key="t", model="fake", timeout=5, max_retries=0)
        srv.enqueue("completed", "streamed completion")
        assert llm.complete("Say hi").text == "completed"
        assert "".join(r.delta for r in llm.stream_complete("Say hi")) == "streamed completion"
        assert [r.path for r in srv.requests] == ["/v1/completions"] * 2
        assert srv.chat_requests[0].user_text == "Say hi"


# --------------------------------------------------------------------------- raw SDKs (protocol)


def test_anthropic_sdk_non_streaming_and_streaming():
    import anthropic

    with FakeAnthropic() as srv:
        client = anthropic.Anthropic(api_key="test", base_url=srv.base_url, timeout=5, max_retries=0)
        srv.enqueue("plain answer", "streamed answer here")
        msg = client.messages.create(model="fake", max_tokens=64, system=SYSTEM,
                                     messages=[{"role": "user", "content": QUESTION}])
        assert msg.content[0].text == "plain answer"
        assert msg.stop_reason == "end_turn" and msg.usage.output_tokens == 2
        with client.messages.stream(model="fake", max_tokens=64,
                                    messages=[{"role": "user", "content": QUESTION}]) as stream:
            pieces = list(stream.text_stream)
            final = stream.get_final_message()
        assert pieces == ["streamed ", "answer ", "here"]
        assert final.content[0].text == "streamed answer here"
        first, second = srv.chat_requests
        assert first.system_prompt == SYSTEM and first.stream is False
        assert second.stream is True and second.user_text == QUESTION


def test_anthropic_sdk_event_sequence():
    import anthropic

    with FakeAnthropic() as srv:
        client = anthropic.Anthropic(api_key="test", base_url=srv.base_url, timeout=5, max_retries=0)
        srv.enqueue("x y")
        events = [e.type for e in client.messages.create(
            model="fake", max_tokens=8, messages=[{"role": "user", "content": "q"}], stream=True)]
        assert events == ["message_start", "content_block_start", "content_block_delta",
                          "content_block_delta", "content_block_stop", "message_delta", "message_stop"]


def test_anthropic_sdk_failures():
    import anthropic

    with FakeAnthropic() as srv:
        client = anthropic.Anthropic(api_key="test", base_url=srv.base_url, timeout=CLIENT_TIMEOUT, max_retries=0)
        kw = dict(model="fake", max_tokens=8, messages=[{"role": "user", "content": "q"}])
        srv.enqueue_error(500)
        with pytest.raises(anthropic.InternalServerError):
            client.messages.create(**kw)
        srv.enqueue_rate_limit(retry_after=3)
        with pytest.raises(anthropic.RateLimitError) as ei:
            client.messages.create(**kw)
        assert ei.value.response.headers["retry-after"] == "3"
        assert ei.value.body["error"]["type"] == "rate_limit_error"
        srv.enqueue_stall(10)
        t0 = time.monotonic()
        with pytest.raises(anthropic.APITimeoutError):
            client.messages.create(**kw)
        assert time.monotonic() - t0 < CLIENT_TIMEOUT + 2.5
        srv.enqueue_cut("a b c", after_chunks=1)
        with pytest.raises(TRANSPORT_ERRORS):
            list(client.messages.create(stream=True, **kw))
        srv.enqueue_stream_error("overloaded")
        with pytest.raises(anthropic.APIStatusError, match="overloaded"):
            list(client.messages.create(stream=True, **kw))


def test_metadata_endpoints_do_not_consume_the_queue():
    import anthropic
    import ollama
    import openai

    with FakeOpenAI() as o, FakeOllama() as ol, FakeAnthropic() as a:
        for srv in (o, ol, a):
            srv.enqueue("kept")
        with openai.OpenAI(base_url=o.base_url, api_key="t", timeout=5) as oc:
            assert [m.id for m in oc.models.list()] == ["fake"]
        with ollama.Client(host=ol.base_url, timeout=5) as olc:
            assert [m.model for m in olc.list().models] == ["fake:latest"]
            assert olc.show("fake").modelinfo["llama.context_length"] == 8192
        with anthropic.Anthropic(api_key="t", base_url=a.base_url, timeout=5) as ac:
            assert [m.id for m in ac.models.list()] == [a.model]
        for srv in (o, ol, a):
            assert srv.pending == 1 and srv.chat_requests == [] and len(srv.requests) >= 1


# --------------------------------------------------------------------------- server mechanics


def test_binds_loopback_only_and_free_port():
    with FakeOpenAI() as a, FakeOpenAI() as b:
        assert a.port != b.port
        assert a.base_url == f"http://127.0.0.1:{a.port}/v1"
        assert a.url == a.base_url and a.root_url == f"http://127.0.0.1:{a.port}"
    with FakeOllama() as o, FakeAnthropic() as an:
        assert o.base_url == f"http://127.0.0.1:{o.port}"
        assert an.base_url == f"http://127.0.0.1:{an.port}"
        with socket.create_connection(("127.0.0.1", o.port), timeout=2):
            pass
        assert make_fake_server("openai").__class__ is FakeOpenAI


def test_records_headers_and_raw_body_and_404():
    with FakeOpenAI() as srv:
        req = urllib.request.Request(srv.root_url + "/nope", data=b'{"a": 1}', method="POST",
                                     headers={"X-Custom": "yes", "Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as ei:
            urllib.request.urlopen(req, timeout=5)
        assert ei.value.code == 404
        assert json.loads(ei.value.read())["error"]["message"]
        (rec,) = srv.requests
        assert isinstance(rec, RecordedRequest)
        assert rec.method == "POST" and rec.path == "/nope" and rec.json == {"a": 1}
        assert rec.header("x-custom") == "yes" and rec.body == b'{"a": 1}'
        assert not rec.is_generation and srv.chat_requests == []


def test_stop_is_bounded_while_a_client_is_stalled():
    from llama_index.llms.openai_like import OpenAILike

    srv = FakeOpenAI().start()
    srv.enqueue_stall(30)
    llm = OpenAILike(api_base=srv.base_url, api_key="t", model="fake", is_chat_model=True,
                     timeout=20, max_retries=0)
    errors: list[BaseException] = []

    def call():
        try:
            llm.chat(MESSAGES)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=call, daemon=True)
    th.start()
    srv.wait_for_requests(1, timeout=5)
    time.sleep(0.2)
    t0 = time.monotonic()
    srv.stop()
    assert time.monotonic() - t0 < 3.5
    th.join(5)
    assert not th.is_alive()
    assert errors and isinstance(errors[0], TRANSPORT_ERRORS)
    assert not srv.running


def test_stall_is_capped_by_max_stall():
    with FakeOllama(max_stall=0.3) as srv:
        from llama_index.llms.ollama import Ollama

        llm = Ollama(base_url=srv.base_url, model="fake", request_timeout=5, context_window=512)
        srv.enqueue_stall(1000, then="capped")
        t0 = time.monotonic()
        assert llm.chat(MESSAGES).message.content == "capped"
        assert time.monotonic() - t0 < 2


def test_wait_for_requests_times_out():
    with FakeOpenAI() as srv:
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            srv.wait_for_requests(1, timeout=0.2)
        assert time.monotonic() - t0 < 1


def test_reply_validation_and_chunking():
    assert split_chunks("a  b\nc") == ["a  ", "b\n", "c"]
    assert "".join(split_chunks(" lead and trail ")) == " lead and trail "
    assert split_chunks("") == []
    with pytest.raises(ValueError):
        Reply.text("abc", chunks=["a", "b"])
    with pytest.raises(TypeError):
        FakeOpenAI().enqueue(42)  # type: ignore[arg-type]
    r = Reply.rate_limit(2.5)
    assert r.status == 429 and dict(r.headers)["Retry-After"] == "2.5"
