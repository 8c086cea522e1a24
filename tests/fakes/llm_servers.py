"""Protocol-level fake LLM provider servers for tests.

Each fake is a real HTTP server (aiohttp, own event loop in a daemon thread) bound to
127.0.0.1 on a free port.  It speaks enough of the provider's wire protocol that the
official SDKs (``openai``, ``ollama``, ``anthropic``) and the llama-index LLM classes
built on them accept its answers, including streaming.

Scripting works like ``llm``'s ``MockModel.enqueue``: every generation request pops the
next queued reply; when the queue is empty ``default_reply`` is served.  Only
generation endpoints (chat/completions/messages/generate) consume the queue; metadata
endpoints (``/v1/models``, ``/api/show``, ``/api/tags``...) always answer normally.

    with FakeOpenAI() as server:
        server.enqueue_text("Paris.")
        server.enqueue_error(500)
        llm = OpenAILike(api_base=server.base_url, api_key="test", model="fake",
                         is_chat_model=True, max_retries=0, timeout=5)
        assert llm.chat([...]).message.content == "Paris."
        assert server.chat_requests[0].system_prompt.startswith("You are")

Every wait is bounded: stalls are capped at ``max_stall`` seconds, wake up early when
the client disconnects or the server stops, and ``stop()`` returns within ``timeout``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Optional, Union

from aiohttp import web

__all__ = [
    "Reply",
    "RecordedRequest",
    "FakeLLMServer",
    "FakeOpenAI",
    "FakeOllama",
    "FakeAnthropic",
    "make_fake_server",
    "split_chunks",
]

DEFAULT_REPLY_TEXT = "This is a fake reply."
DEFAULT_MAX_STALL = 30.0
_LOOPBACK = "127.0.0.1"


# --------------------------------------------------------------------------- replies


def split_chunks(text: str) -> list[str]:
    """Split text into streaming pieces: one word plus its trailing whitespace each."""
    return re.findall(r"\S+\s*|\s+", text)


@dataclass(frozen=True)
class Reply:
    """One scripted answer.  Build it with the class methods, not the constructor.

    kind: "text" | "error" | "malformed" | "cut" | "stall" | "stream_error"
    """

    kind: str
    content: str = ""
    chunks: Optional[tuple[str, ...]] = None
    status: int = 200
    message: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    body: Optional[bytes] = None
    after_chunks: int = 0
    seconds: float = 0.0
    then: Optional["Reply"] = None
    chunk_delay: float = 0.0

    # -- constructors -----------------------------------------------------------
    @classmethod
    def text(
        cls, text: str, *, chunks: Optional[Iterable[str]] = None, chunk_delay: float = 0.0
    ) -> "Reply":
        """Plain text, served in the provider's format (streamed if the client asked).

        ``chunks``: explicit streaming pieces (default: split on words).
        ``chunk_delay``: seconds to sleep between streamed chunks (capped by max_stall).
        """
        ch = tuple(chunks) if chunks is not None else None
        if ch is not None and "".join(ch) != text:
            raise ValueError("chunks must concatenate to text")
        return cls(kind="text", content=text, chunks=ch, chunk_delay=float(chunk_delay))

    @classmethod
    def error(
        cls,
        status: int = 500,
        message: Optional[str] = None,
        *,
        retry_after: Optional[float] = None,
        headers: Optional[dict[str, str]] = None,
        body: Optional[Union[bytes, str, dict]] = None,
    ) -> "Reply":
        """HTTP error with a provider-style JSON error body (or ``body`` verbatim)."""
        hdrs = dict(headers or {})
        if retry_after is not None:
            ra = float(retry_after)
            hdrs["Retry-After"] = str(int(ra)) if ra == int(ra) else str(ra)
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        return cls(
            kind="error",
            status=int(status),
            message=message or _default_error_message(int(status)),
            headers=tuple(hdrs.items()),
            body=body,
        )

    @classmethod
    def rate_limit(cls, retry_after: float = 1, message: Optional[str] = None) -> "Reply":
        """429 with a ``Retry-After`` header (seconds) and a provider-style error body."""
        return cls.error(429, message, retry_after=retry_after)

    @classmethod
    def malformed(cls, body: Union[str, bytes] = "this is not json {") -> "Reply":
        """Status 200 whose payload is not JSON.

        Non-streaming: the whole body.  Streaming: one frame in the provider's framing
        (SSE ``data:`` line / NDJSON line) carrying the garbage, then the connection ends.
        """
        return cls(kind="malformed", body=body.encode() if isinstance(body, str) else body)

    @classmethod
    def cut(cls, text: str = DEFAULT_REPLY_TEXT, *, after_chunks: int = 1,
            chunks: Optional[Iterable[str]] = None) -> "Reply":
        """Stream cut mid-way: the stream preamble plus ``after_chunks`` content chunks
        are sent, then the connection is closed without the terminator (no ``[DONE]``,
        no ``message_stop``, no ``"done": true``, unterminated chunked encoding).

        Non-streaming requests get a ``Content-Length`` header for the full JSON body
        but only its first half before the connection closes.
        """
        ch = tuple(chunks) if chunks is not None else None
        return cls(kind="cut", content=text, chunks=ch, after_chunks=int(after_chunks))

    @classmethod
    def stall(cls, seconds: float, *, then: Union["Reply", str, None] = None,
              after_chunks: int = 0) -> "Reply":
        """Wait ``seconds`` (capped at the server's ``max_stall``) before answering.

        ``then``: what to serve after the wait (default: the server's default reply).
        ``after_chunks`` > 0 on a streaming request: send the preamble and that many
        chunks of ``then`` first, then stall mid-stream (tests read timeouts).
        The wait ends early when the client disconnects or the server stops; in that
        case the connection is closed without an answer.
        """
        return cls(kind="stall", seconds=float(seconds), then=_coerce_reply(then) if then is not None else None,
                   after_chunks=int(after_chunks))

    @classmethod
    def stream_error(cls, message: str = "Overloaded", *, text: str = DEFAULT_REPLY_TEXT,
                     after_chunks: int = 1) -> "Reply":
        """An error reported *inside* a 200 stream after ``after_chunks`` chunks
        (OpenAI ``data: {"error": ...}``, Anthropic ``event: error``, Ollama
        ``{"error": ...}`` line).  Non-streaming requests get a 500 error instead."""
        return cls(kind="stream_error", content=text, message=message, after_chunks=int(after_chunks))


Responder = Callable[["RecordedRequest"], Union[Reply, str]]
ReplyLike = Union[Reply, str, Responder]


def _coerce_reply(r: Union[Reply, str]) -> Reply:
    if isinstance(r, Reply):
        return r
    if isinstance(r, str):
        return Reply.text(r)
    raise TypeError(f"expected Reply or str, got {type(r).__name__}")


def _default_error_message(status: int) -> str:
    return {
        400: "Bad request",
        401: "Invalid API key",
        404: "Not found",
        429: "Rate limit exceeded, please retry later",
        500: "Internal server error",
        502: "Bad gateway",
        503: "Service unavailable",
        529: "Overloaded",
    }.get(status, f"HTTP {status}")


# --------------------------------------------------------------------------- request log


@dataclass
class RecordedRequest:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: bytes
    json: Any  # parsed body, or None when empty / not JSON
    is_generation: bool  # True for chat/completion/messages/generate endpoints
    stream: Optional[bool]  # for generation requests: did the client ask to stream?
    reply: Optional[Reply] = None  # what was served (generation requests only)
    time: float = field(default_factory=time.time)

    def header(self, name: str, default: Optional[str] = None) -> Optional[str]:
        return self.headers.get(name.lower(), default)

    @property
    def model(self) -> Optional[str]:
        return self.json.get("model") if isinstance(self.json, dict) else None

    @property
    def messages(self) -> list[dict]:
        if isinstance(self.json, dict) and isinstance(self.json.get("messages"), list):
            return self.json["messages"]
        return []

    @property
    def system_prompt(self) -> str:
        """System text, provider-neutral: OpenAI/Ollama ``system``/``developer``
        messages, Anthropic top-level ``system`` (string or blocks).  "" if none."""
        parts: list[str] = []
        if isinstance(self.json, dict):
            parts.append(_content_text(self.json.get("system")))
        for m in self.messages:
            if isinstance(m, dict) and m.get("role") in ("system", "developer"):
                parts.append(_content_text(m.get("content")))
        return "\n".join(p for p in parts if p)

    @property
    def user_text(self) -> str:
        """Text of all user messages (or the completion ``prompt``), joined by newlines."""
        parts = [_content_text(m.get("content")) for m in self.messages
                 if isinstance(m, dict) and m.get("role") == "user"]
        if isinstance(self.json, dict) and isinstance(self.json.get("prompt"), str):
            parts.append(self.json["prompt"])
        return "\n".join(p for p in parts if p)

    @property
    def all_text(self) -> str:
        """Every piece of prompt text in the request (system + all messages + prompt)."""
        parts = [_content_text(self.json.get("system")) if isinstance(self.json, dict) else ""]
        parts += [_content_text(m.get("content")) for m in self.messages if isinstance(m, dict)]
        if isinstance(self.json, dict) and isinstance(self.json.get("prompt"), str):
            parts.append(self.json["prompt"])
        return "\n".join(p for p in parts if p)


def _content_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        out = []
        for part in content:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
        return "\n".join(out)
    if isinstance(content, dict) and isinstance(content.get("text"), str):
        return content["text"]
    return ""


def _approx_tokens(text: str) -> int:
    return max(1, len(text.split())) if text else 0


class _Abort(Exception):
    """Raised inside a handler after the transport was closed on purpose."""


# --------------------------------------------------------------------------- base server


class FakeLLMServer:
    """Base class: HTTP server thread, reply queue, request log.

    Args:
        default_reply: served when the queue is empty (str or Reply).
        model: model name echoed in responses when the request names none.
        max_stall: upper bound (seconds) for any stall / chunk delay.
        port: 0 (default) picks a free port.  The host is always 127.0.0.1.
        shutdown_timeout: bound for ``stop()``.
    """

    provider: str = "base"
    _GENERATION_PATHS: frozenset[str] = frozenset()
    _stream_content_type = "text/event-stream"

    def __init__(
        self,
        *,
        default_reply: Union[Reply, str] = DEFAULT_REPLY_TEXT,
        model: str = "fake",
        max_stall: float = DEFAULT_MAX_STALL,
        port: int = 0,
        shutdown_timeout: float = 3.0,
    ) -> None:
        self.default_reply: Reply = _coerce_reply(default_reply)
        self.model = model
        self.max_stall = float(max_stall)
        self.shutdown_timeout = float(shutdown_timeout)
        self._requested_port = int(port)
        self._port: Optional[int] = None
        self._lock = threading.Lock()
        self._queue: list[ReplyLike] = []
        self._requests: list[RecordedRequest] = []
        self._cond = threading.Condition(self._lock)
        self._thread: Optional[threading.Thread] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._runner: Optional[web.AppRunner] = None
        self._stop_event: Optional[asyncio.Event] = None
        self._ready = threading.Event()
        self._start_error: Optional[BaseException] = None
        self._ids = itertools.count(1)

    # -- lifecycle -----------------------------------------------------------------
    def start(self, timeout: float = 10.0) -> "FakeLLMServer":
        if self._thread is not None:
            raise RuntimeError("server already started")
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((_LOOPBACK, self._requested_port))
            sock.listen(64)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        self._port = sock.getsockname()[1]
        self._thread = threading.Thread(
            target=self._thread_main, args=(sock,), name=f"fake-{self.provider}-{self._port}", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError(f"fake {self.provider} server did not start within {timeout}s")
        if self._start_error is not None:
            raise RuntimeError(f"fake {self.provider} server failed to start") from self._start_error
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop the server; returns within about ``timeout`` (default shutdown_timeout) seconds."""
        timeout = self.shutdown_timeout if timeout is None else float(timeout)
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        deadline = time.monotonic() + timeout
        if not loop.is_closed():
            try:
                fut = asyncio.run_coroutine_threadsafe(self._astop(max(0.1, timeout - 0.5)), loop)
                fut.result(timeout=max(0.1, deadline - time.monotonic()))
            except Exception:
                pass
            try:
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:
                pass  # loop already closed
        thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- addresses -------------------------------------------------------------------
    @property
    def host(self) -> str:
        return _LOOPBACK

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError("server not started")
        return self._port

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT`` (no path)."""
        return f"http://{_LOOPBACK}:{self.port}"

    @property
    def base_url(self) -> str:
        """The base URL the provider's client expects (overridden per provider)."""
        return self.root_url

    @property
    def url(self) -> str:
        """Alias of ``base_url``."""
        return self.base_url

    # -- scripting ---------------------------------------------------------------------
    def enqueue(self, *replies: ReplyLike) -> "FakeLLMServer":
        """Queue replies in order.  Each is a Reply, a str (plain text) or a callable
        ``f(RecordedRequest) -> Reply | str`` evaluated when the request arrives."""
        for r in replies:
            if not (isinstance(r, (Reply, str)) or callable(r)):
                raise TypeError(f"cannot enqueue {type(r).__name__}")
        with self._lock:
            self._queue.extend(replies)
        return self

    def enqueue_text(self, text: str, *, chunks: Optional[Iterable[str]] = None,
                     chunk_delay: float = 0.0) -> "FakeLLMServer":
        return self.enqueue(Reply.text(text, chunks=chunks, chunk_delay=chunk_delay))

    def enqueue_error(self, status: int = 500, message: Optional[str] = None, *,
                      retry_after: Optional[float] = None, headers: Optional[dict[str, str]] = None,
                      body: Optional[Union[bytes, str, dict]] = None) -> "FakeLLMServer":
        return self.enqueue(Reply.error(status, message, retry_after=retry_after, headers=headers, body=body))

    def enqueue_rate_limit(self, retry_after: float = 1, message: Optional[str] = None) -> "FakeLLMServer":
        return self.enqueue(Reply.rate_limit(retry_after, message))

    def enqueue_malformed(self, body: Union[str, bytes] = "this is not json {") -> "FakeLLMServer":
        return self.enqueue(Reply.malformed(body))

    def enqueue_cut(self, text: str = DEFAULT_REPLY_TEXT, *, after_chunks: int = 1,
                    chunks: Optional[Iterable[str]] = None) -> "FakeLLMServer":
        return self.enqueue(Reply.cut(text, after_chunks=after_chunks, chunks=chunks))

    def enqueue_stall(self, seconds: float, *, then: Union[Reply, str, None] = None,
                      after_chunks: int = 0) -> "FakeLLMServer":
        return self.enqueue(Reply.stall(seconds, then=then, after_chunks=after_chunks))

    def enqueue_stream_error(self, message: str = "Overloaded", *, text: str = DEFAULT_REPLY_TEXT,
                             after_chunks: int = 1) -> "FakeLLMServer":
        return self.enqueue(Reply.stream_error(message, text=text, after_chunks=after_chunks))

    @property
    def pending(self) -> int:
        """Number of queued replies not yet served."""
        with self._lock:
            return len(self._queue)

    def clear_queue(self) -> None:
        with self._lock:
            self._queue.clear()

    def reset(self) -> None:
        """Drop queued replies and the request log."""
        with self._lock:
            self._queue.clear()
            self._requests.clear()

    # -- request log --------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received (a copy), including metadata endpoints."""
        with self._lock:
            return list(self._requests)

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """Only generation requests (the ones that consume the reply queue)."""
        with self._lock:
            return [r for r in self._requests if r.is_generation]

    @property
    def last_request(self) -> Optional[RecordedRequest]:
        with self._lock:
            gens = [r for r in self._requests if r.is_generation]
            return gens[-1] if gens else None

    def clear_requests(self) -> None:
        with self._lock:
            self._requests.clear()

    def wait_for_requests(self, n: int = 1, timeout: float = 5.0, *, generation_only: bool = True) -> list[RecordedRequest]:
        """Block until at least ``n`` (generation) requests were recorded; bounded by ``timeout``.
        Raises TimeoutError otherwise."""
        deadline = time.monotonic() + min(float(timeout), 60.0)
        with self._cond:
            while True:
                reqs = [r for r in self._requests if r.is_generation or not generation_only]
                if len(reqs) >= n:
                    return reqs
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"expected {n} requests, got {len(reqs)}")
                self._cond.wait(left)

    # -- server internals ------------------------------------------------------------------
    def _thread_main(self, sock: socket.socket) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._astart(sock))
        except BaseException as e:  # pragma: no cover - start failure
            self._start_error = e
            self._ready.set()
            sock.close()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.wait(pending, timeout=1.0))
            except Exception:
                pass
            loop.close()

    async def _astart(self, sock: socket.socket) -> None:
        self._stop_event = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        runner = web.AppRunner(app, access_log=None, handle_signals=False,
                               shutdown_timeout=max(0.1, self.shutdown_timeout - 1.0))
        await runner.setup()
        site = web.SockSite(runner, sock)
        await site.start()
        self._runner = runner

    async def _astop(self, budget: float) -> None:
        if self._stop_event is not None:
            self._stop_event.set()
        if self._runner is not None:
            try:
                await asyncio.wait_for(self._runner.cleanup(), timeout=budget)
            except Exception:
                pass

    def _stopping(self) -> bool:
        return self._stop_event is not None and self._stop_event.is_set()

    def _pop_reply(self) -> ReplyLike:
        with self._lock:
            return self._queue.pop(0) if self._queue else self.default_reply

    def _record(self, rec: RecordedRequest) -> None:
        with self._cond:
            self._requests.append(rec)
            self._cond.notify_all()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        parsed: Any = None
        if raw:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
        path = request.path
        is_gen = request.method == "POST" and path in self._GENERATION_PATHS
        rec = RecordedRequest(
            method=request.method,
            path=path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=raw,
            json=parsed,
            is_generation=is_gen,
            stream=self._wants_stream(path, parsed) if is_gen else None,
        )
        if not is_gen:
            self._record(rec)
            return await self._handle_meta(request, rec)

        if not isinstance(parsed, dict):
            # Not something any real client sends: answer 400 without consuming the queue.
            self._record(rec)
            return self._error_response(400, "request body is not a JSON object")
        item = self._pop_reply()
        if callable(item) and not isinstance(item, Reply):
            try:
                item = item(rec)
            except Exception as e:  # responder bug -> visible 500
                item = Reply.error(500, f"fake responder raised {type(e).__name__}: {e}")
        reply = _coerce_reply(item)
        rec.reply = reply
        self._record(rec)
        try:
            return await self._serve(request, rec, reply)
        except _Abort:
            # Transport already closed on purpose; aiohttp needs a response object but
            # nothing more can be sent.
            return web.Response(status=200)
        except (ConnectionError, asyncio.CancelledError):
            raise

    # -- serving -------------------------------------------------------------------------
    async def _sleep(self, request: web.Request, seconds: float) -> bool:
        """Interruptible sleep.  Returns False if the server is stopping or the client left."""
        end = time.monotonic() + min(max(0.0, seconds), self.max_stall)
        assert self._stop_event is not None
        while True:
            if self._stop_event.is_set():
                return False
            tr = request.transport
            if tr is None or tr.is_closing():
                return False
            left = end - time.monotonic()
            if left <= 0:
                return True
            try:
                await asyncio.wait_for(self._stop_event.wait(), timeout=min(left, 0.05))
            except asyncio.TimeoutError:
                pass

    def _abort(self, request: web.Request) -> None:
        tr = request.transport
        if tr is not None:
            tr.close()  # flushes what was written, then closes (no terminator)
        raise _Abort()

    async def _serve(self, request: web.Request, rec: RecordedRequest, reply: Reply) -> web.StreamResponse:
        stream = bool(rec.stream)
        body = rec.json
        if reply.kind == "stall":
            then = reply.then or self.default_reply
            if stream and reply.after_chunks > 0 and then.kind == "text":
                return await self._stream_text(request, body, then, stall_after=reply.after_chunks,
                                               stall_seconds=reply.seconds)
            if not await self._sleep(request, reply.seconds):
                self._abort(request)
            return await self._serve(request, rec, then)
        if reply.kind == "error":
            return self._error_response(reply.status, reply.message, dict(reply.headers), reply.body)
        if reply.kind == "malformed":
            assert reply.body is not None
            if stream:
                resp = web.StreamResponse(status=200, headers={"Content-Type": self._stream_content_type})
                await resp.prepare(request)
                await resp.write(self._malformed_frame(reply.body))
                await resp.write_eof()
                return resp
            return web.Response(status=200, body=reply.body, content_type="application/json")
        if reply.kind == "text":
            if stream:
                return await self._stream_text(request, body, reply)
            return self._json_response(self._full_body(body, reply.content))
        if reply.kind == "cut":
            if stream:
                return await self._stream_text(request, body, reply, cut_after=reply.after_chunks)
            data = json.dumps(self._full_body(body, reply.content)).encode()
            resp = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
            resp.content_length = len(data)
            await resp.prepare(request)
            await resp.write(data[: len(data) // 2])
            self._abort(request)
        if reply.kind == "stream_error":
            if stream:
                return await self._stream_text(request, body, reply, error_after=reply.after_chunks)
            return self._error_response(500, reply.message)
        raise ValueError(f"unknown reply kind {reply.kind!r}")  # pragma: no cover

    async def _stream_text(self, request: web.Request, body: dict, reply: Reply, *,
                           cut_after: Optional[int] = None, error_after: Optional[int] = None,
                           stall_after: Optional[int] = None, stall_seconds: float = 0.0) -> web.StreamResponse:
        pieces = list(reply.chunks) if reply.chunks is not None else split_chunks(reply.content)
        prefix, content, suffix = self._stream_frames(body, reply.content, pieces)
        resp = web.StreamResponse(status=200, headers={
            "Content-Type": self._stream_content_type, "Cache-Control": "no-cache", **self._extra_headers()})
        await resp.prepare(request)
        for frame in prefix:
            await resp.write(frame)
        for i, frame in enumerate(content + [None]):
            if cut_after is not None and i >= cut_after:
                self._abort(request)
            if error_after is not None and i >= error_after:
                await resp.write(self._stream_error_frame(reply.message))
                await resp.write_eof()
                return resp
            if stall_after is not None and i == stall_after:
                if not await self._sleep(request, stall_seconds):
                    self._abort(request)
            if frame is None:
                break
            if i > 0 and reply.chunk_delay > 0:
                if not await self._sleep(request, reply.chunk_delay):
                    self._abort(request)
            await resp.write(frame)
        for frame in suffix:
            await resp.write(frame)
        await resp.write_eof()
        return resp

    def _json_response(self, data: Any, status: int = 200, headers: Optional[dict[str, str]] = None) -> web.Response:
        hdrs = {**self._extra_headers(), **(headers or {})}
        return web.Response(status=status, body=json.dumps(data).encode(),
                            content_type="application/json", headers=hdrs)

    def _error_response(self, status: int, message: str, headers: Optional[dict[str, str]] = None,
                        body: Optional[bytes] = None) -> web.Response:
        hdrs = {**self._extra_headers(), **(headers or {})}
        data = body if body is not None else json.dumps(self._error_body(status, message)).encode()
        return web.Response(status=status, body=data, content_type="application/json", headers=hdrs)

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}{next(self._ids):04d}{uuid.uuid4().hex[:12]}"

    def _model_of(self, body: Any) -> str:
        if isinstance(body, dict) and isinstance(body.get("model"), str) and body["model"]:
            return body["model"]
        return self.model

    def _prompt_tokens(self, body: Any) -> int:
        rec_text = json.dumps(body.get("messages", body.get("prompt", ""))) if isinstance(body, dict) else ""
        return _approx_tokens(rec_text)

    # -- provider hooks -----------------------------------------------------------------------
    def _wants_stream(self, path: str, body: Any) -> bool:
        return isinstance(body, dict) and bool(body.get("stream"))

    def _extra_headers(self) -> dict[str, str]:
        return {}

    async def _handle_meta(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        return self._error_response(404, f"fake {self.provider}: no route for {request.method} {request.path}")

    def _full_body(self, body: dict, text: str) -> dict:
        raise NotImplementedError

    def _stream_frames(self, body: dict, text: str, pieces: list[str]) -> tuple[list[bytes], list[bytes], list[bytes]]:
        raise NotImplementedError

    def _stream_error_frame(self, message: str) -> bytes:
        raise NotImplementedError

    def _malformed_frame(self, payload: bytes) -> bytes:
        return b"data: " + payload + b"\n\n"

    def _error_body(self, status: int, message: str) -> Any:
        raise NotImplementedError


# --------------------------------------------------------------------------- OpenAI


def _sse(data: Any, event: Optional[str] = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data)
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()


class FakeOpenAI(FakeLLMServer):
    """OpenAI-compatible server: ``POST /v1/chat/completions``, ``POST /v1/completions``
    (what ``OpenAILike`` uses when ``is_chat_model=False``), ``GET /v1/models[/{id}]``.

    ``base_url`` / ``api_base`` = ``http://127.0.0.1:PORT/v1``.
    """

    provider = "openai"
    _GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions",
                                   "/chat/completions", "/completions"})

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    @property
    def api_base(self) -> str:
        return self.base_url

    def _extra_headers(self) -> dict[str, str]:
        return {"x-request-id": f"req_{uuid.uuid4().hex[:16]}"}

    def _is_chat(self, body: Any) -> bool:
        return isinstance(body, dict) and "messages" in body

    async def _handle_meta(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        path = request.path.rstrip("/")
        if request.method == "GET" and path in ("/v1/models", "/models"):
            return self._json_response({"object": "list", "data": [self._model_obj(self.model)]})
        if request.method == "GET" and path.startswith(("/v1/models/", "/models/")):
            return self._json_response(self._model_obj(path.split("/models/", 1)[1]))
        return await super()._handle_meta(request, rec)

    @staticmethod
    def _model_obj(name: str) -> dict:
        return {"id": name, "object": "model", "created": 1700000000, "owned_by": "fake"}

    def _usage(self, body: Any, text: str) -> dict:
        p, c = self._prompt_tokens(body), _approx_tokens(text)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def _full_body(self, body: dict, text: str) -> dict:
        created = int(time.time())
        if self._is_chat(body):
            return {
                "id": self._new_id("chatcmpl-fake"),
                "object": "chat.completion",
                "created": created,
                "model": self._model_of(body),
                "system_fingerprint": None,
                "choices": [{"index": 0,
                             "message": {"role": "assistant", "content": text, "refusal": None},
                             "logprobs": None, "finish_reason": "stop"}],
                "usage": self._usage(body, text),
            }
        return {
            "id": self._new_id("cmpl-fake"),
            "object": "text_completion",
            "created": created,
            "model": self._model_of(body),
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": "stop"}],
            "usage": self._usage(body, text),
        }

    def _stream_frames(self, body, text, pieces):
        cid, created, model = self._new_id("chatcmpl-fake"), int(time.time()), self._model_of(body)
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        if self._is_chat(body):
            def chunk(delta: dict, finish: Optional[str] = None) -> bytes:
                return _sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                             "system_fingerprint": None,
                             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})
            prefix = [chunk({"role": "assistant", "content": ""})]
            content = [chunk({"content": p}) for p in pieces]
            suffix = [chunk({}, "stop")]
            obj = "chat.completion.chunk"
        else:
            def chunk(delta: dict, finish: Optional[str] = None) -> bytes:  # type: ignore[misc]
                return _sse({"id": cid, "object": "text_completion", "created": created, "model": model,
                             "choices": [{"index": 0, "text": delta.get("content", ""), "logprobs": None,
                                          "finish_reason": finish}]})
            prefix = []
            content = [chunk({"content": p}) for p in pieces]
            suffix = [chunk({}, "stop")]
            obj = "text_completion"
        if include_usage:
            suffix.append(_sse({"id": cid, "object": obj, "created": created, "model": model,
                                "choices": [], "usage": self._usage(body, text)}))
        suffix.append(b"data: [DONE]\n\n")
        return prefix, content, suffix

    def _stream_error_frame(self, message: str) -> bytes:
        return _sse({"error": {"message": message, "type": "server_error", "param": None, "code": None}})

    def _error_body(self, status: int, message: str) -> Any:
        etype, code = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            404: ("invalid_request_error", "not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("server_error", None))
        return {"error": {"message": message, "type": etype, "param": None, "code": code}}


# --------------------------------------------------------------------------- Ollama


class FakeOllama(FakeLLMServer):
    """Ollama server: ``POST /api/chat``, ``POST /api/generate`` (NDJSON streaming,
    streaming is the default when the body has no ``stream`` key, like real Ollama),
    plus ``POST /api/show`` (llama-index's ``Ollama`` calls it on the first chat to read
    the context window unless ``context_window=`` is given), ``GET /api/tags``,
    ``GET /api/ps``, ``GET /api/version``, ``GET /``.

    ``context_length``: value reported by ``/api/show`` as ``llama.context_length``.
    ``base_url`` = ``http://127.0.0.1:PORT``.
    """

    provider = "ollama"
    _GENERATION_PATHS = frozenset({"/api/chat", "/api/generate"})
    _stream_content_type = "application/x-ndjson"

    def __init__(self, *, context_length: int = 8192, **kw: Any) -> None:
        super().__init__(**kw)
        self.context_length = int(context_length)

    def _wants_stream(self, path: str, body: Any) -> bool:
        return isinstance(body, dict) and body.get("stream", True) is not False

    @staticmethod
    def _now() -> str:
        t = time.time()
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int((t % 1) * 1e6):06d}Z"

    def _model_entry(self, name: str) -> dict:
        full = name if ":" in name else f"{name}:latest"
        return {
            "name": full, "model": full, "modified_at": "2025-01-01T00:00:00Z", "size": 1234567,
            "digest": "0" * 64,
            "details": {"parent_model": "", "format": "gguf", "family": "llama", "families": ["llama"],
                        "parameter_size": "1B", "quantization_level": "Q4_0"},
        }

    async def _handle_meta(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if method in ("GET", "HEAD") and path == "/":
            return web.Response(text="Ollama is running")
        if method == "GET" and path == "/api/version":
            return self._json_response({"version": "0.12.0"})
        if method == "GET" and path == "/api/tags":
            return self._json_response({"models": [self._model_entry(self.model)]})
        if method == "GET" and path == "/api/ps":
            entry = self._model_entry(self.model)
            entry.update({"expires_at": "2099-01-01T00:00:00Z", "size_vram": 0})
            return self._json_response({"models": [entry]})
        if method == "POST" and path == "/api/show":
            name = (rec.json or {}).get("model") or (rec.json or {}).get("name") or self.model
            return self._json_response({
                "modelfile": f"FROM {name}\n",
                "parameters": "stop \"<|eot|>\"",
                "template": "{{ .Prompt }}",
                "details": self._model_entry(name)["details"],
                "model_info": {"general.architecture": "llama", "general.parameter_count": 1000000000,
                               "llama.context_length": self.context_length},
                "capabilities": ["completion"],
                "modified_at": "2025-01-01T00:00:00Z",
            })
        return await super()._handle_meta(request, rec)

    def _final_fields(self, body: Any, text: str) -> dict:
        return {
            "done_reason": "stop", "done": True,
            "total_duration": 123_000_000, "load_duration": 1_000_000,
            "prompt_eval_count": self._prompt_tokens(body), "prompt_eval_duration": 20_000_000,
            "eval_count": _approx_tokens(text), "eval_duration": 100_000_000,
        }

    def _piece(self, body: Any, content: str, done: bool) -> dict:
        base: dict[str, Any] = {"model": self._model_of(body), "created_at": self._now()}
        if "messages" in body:
            base["message"] = {"role": "assistant", "content": content}
        else:
            base["response"] = content
        base["done"] = done
        return base

    def _full_body(self, body: dict, text: str) -> dict:
        return {**self._piece(body, text, True), **self._final_fields(body, text)}

    def _stream_frames(self, body, text, pieces):
        line = lambda d: (json.dumps(d) + "\n").encode()  # noqa: E731
        content = [line(self._piece(body, p, False)) for p in pieces]
        suffix = [line({**self._piece(body, "", True), **self._final_fields(body, text)})]
        return [], content, suffix

    def _stream_error_frame(self, message: str) -> bytes:
        return (json.dumps({"error": message}) + "\n").encode()

    def _malformed_frame(self, payload: bytes) -> bytes:
        return payload + b"\n"

    def _error_body(self, status: int, message: str) -> Any:
        return {"error": message}


# --------------------------------------------------------------------------- Anthropic


class FakeAnthropic(FakeLLMServer):
    """Anthropic Messages API: ``POST /v1/messages`` (JSON or SSE),
    ``POST /v1/messages/count_tokens``, ``GET /v1/models[/{id}]``.

    ``base_url`` = ``http://127.0.0.1:PORT`` (the SDK appends ``/v1/messages``).
    """

    provider = "anthropic"
    _GENERATION_PATHS = frozenset({"/v1/messages"})

    def __init__(self, *, model: str = "claude-haiku-4-5", **kw: Any) -> None:
        super().__init__(model=model, **kw)

    def _extra_headers(self) -> dict[str, str]:
        return {"request-id": f"req_{uuid.uuid4().hex[:16]}"}

    def _prompt_tokens(self, body: Any) -> int:
        if not isinstance(body, dict):
            return 0
        return _approx_tokens(json.dumps(body.get("messages", [])) + json.dumps(body.get("system", "")))

    async def _handle_meta(self, request: web.Request, rec: RecordedRequest) -> web.StreamResponse:
        path, method = request.path.rstrip("/"), request.method
        if method == "POST" and path == "/v1/messages/count_tokens":
            return self._json_response({"input_tokens": self._prompt_tokens(rec.json)})
        if method == "GET" and path == "/v1/models":
            m = self._model_obj(self.model)
            return self._json_response({"data": [m], "has_more": False, "first_id": m["id"], "last_id": m["id"]})
        if method == "GET" and path.startswith("/v1/models/"):
            return self._json_response(self._model_obj(path.split("/v1/models/", 1)[1]))
        return await super()._handle_meta(request, rec)

    @staticmethod
    def _model_obj(name: str) -> dict:
        return {"type": "model", "id": name, "display_name": name, "created_at": "2025-01-01T00:00:00Z"}

    def _full_body(self, body: dict, text: str) -> dict:
        return {
            "id": self._new_id("msg_fake"),
            "type": "message",
            "role": "assistant",
            "model": self._model_of(body),
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": self._prompt_tokens(body), "output_tokens": _approx_tokens(text)},
        }

    def _stream_frames(self, body, text, pieces):
        start = {
            "type": "message_start",
            "message": {"id": self._new_id("msg_fake"), "type": "message", "role": "assistant",
                        "model": self._model_of(body), "content": [], "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": self._prompt_tokens(body), "output_tokens": 1}},
        }
        prefix = [
            _sse(start, "message_start"),
            _sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                 "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]
        content = [_sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}},
                        "content_block_delta") for p in pieces]
        suffix = [
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                  "usage": {"output_tokens": _approx_tokens(text)}}, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]
        return prefix, content, suffix

    def _stream_error_frame(self, message: str) -> bytes:
        return _sse({"type": "error", "error": {"type": "overloaded_error", "message": message}}, "error")

    def _malformed_frame(self, payload: bytes) -> bytes:
        return b"event: content_block_delta\ndata: " + payload + b"\n\n"

    def _error_body(self, status: int, message: str) -> Any:
        etype = {
            400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error",
            529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": etype, "message": message},
                "request_id": f"req_{uuid.uuid4().hex[:16]}"}


# --------------------------------------------------------------------------- helpers

_PROVIDERS: dict[str, type[FakeLLMServer]] = {
    "openai": FakeOpenAI,
    "openai_like": FakeOpenAI,
    "ollama": FakeOllama,
    "anthropic": FakeAnthropic,
}


def make_fake_server(provider: str, **kw: Any) -> FakeLLMServer:
    """``make_fake_server("ollama")`` -> an unstarted FakeOllama (use ``with`` or ``.start()``)."""
    try:
        cls = _PROVIDERS[provider.lower()]
    except KeyError:
        raise ValueError(f"unknown provider {provider!r}; known: {sorted(_PROVIDERS)}") from None
    return cls(**kw)
