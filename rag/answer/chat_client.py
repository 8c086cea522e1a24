"""What every LLM backend offers the answerer: one streamed chat call that can be told to stop.

`LLMAnswerer` owns the deadline and the user's `on_token` callback through a `Generation`;
a backend (`llamacpp.LlamaCpp`, `llamaindex_chat.LlamaIndexChat`) only generates, hands each
text delta to `Generation.emit` and stops as soon as `Generation.should_stop()` says so.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

log = logging.getLogger(__name__)

#: One chat message as OpenAI-compatible APIs take it: {"role": "system"|"user"|"assistant", "content": str}.
Message = dict[str, str]


class LLMError(Exception):
    """The LLM call failed; the message is a short reason fit for a notice."""


class Generation:
    """One model call's limits and listener: deadline, token budget, stop strings, `on_token`.

    `close()` ends it from the caller's side (answer given up, Ctrl-C): later deltas are dropped
    and `should_stop()` turns true, so a backend still running stops at its next token.
    """

    def __init__(
        self,
        timeout: float,
        *,
        max_tokens: int,
        stop: Sequence[str] = (),
        on_token: Callable[[str], None] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> None:
        self.timeout = timeout
        self.schema = schema  # a JSON schema the reply must follow (backends that can constrain decoding)
        self.deadline = time.monotonic() + timeout
        self.max_tokens = max_tokens
        self.stop = tuple(stop)
        self._on_token = on_token
        self._closed = threading.Event()
        self.stopped_early = False  # the backend was told to stop (deadline or close) before it finished

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def should_stop(self) -> bool:
        if self._closed.is_set() or self.expired:
            self.stopped_early = True
        return self.stopped_early

    def emit(self, delta: str) -> None:
        """Pass a text delta to the listener; a listener that fails is dropped, the answer goes on."""
        listener = self._on_token
        if not delta or listener is None or self._closed.is_set():
            return
        try:
            listener(delta)
        except Exception:  # noqa: BLE001 - a broken display must not cost the answer
            log.warning("on_token listener failed; streaming stopped for this answer", exc_info=True)
            self._on_token = None

    def close(self) -> None:
        self._closed.set()


class ChatClient(Protocol):
    """A chat model qabot can stream from."""

    name: str  # "<answerer>:<model>", shown as the answer's backend
    structured: bool  # whether `stream` honours `Generation.schema` (constrained decoding)

    def stream(self, messages: Sequence[Message], generation: Generation) -> str:
        """Generate a reply, emitting deltas as they come; return the whole text (partial if stopped).

        Raises LLMError (or the client library's own exceptions) when no reply can be had.
        """
        ...
