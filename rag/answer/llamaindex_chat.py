"""Any llama-index chat LLM (OpenAI, OpenAI-compatible servers, Ollama, Anthropic) as a `ChatClient`.

Replies are always streamed: the user sees tokens as they come, and a call past its deadline
is stopped between two chunks, which closes the connection (llama.cpp's and vLLM's servers
then cancel the generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .chat_client import Generation, Message


class LlamaIndexChat:
    """Streams from a llama-index LLM client built by `registry`."""

    def __init__(self, llm: Any, name: str, *, stop_limit: int = 0, structured: bool = False) -> None:
        self.llm = llm
        self.name = name
        self.stop_limit = stop_limit  # stop strings the server accepts (OpenAI: 4; 0 = send none)
        self.structured = structured  # the API takes OpenAI's response_format with a JSON schema

    def stream(self, messages: Sequence[Message], generation: Generation) -> str:
        from llama_index.core.llms import ChatMessage

        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        extra: dict[str, Any] = {"stop": list(generation.stop[: self.stop_limit])} if self.stop_limit else {}
        if self.structured and generation.schema is not None:
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": generation.schema, "strict": True}}
        pieces: list[str] = []
        replies = self.llm.stream_chat(chat, **extra)
        try:
            for chunk in replies:
                if chunk.delta:
                    pieces.append(chunk.delta)
                    generation.emit(chunk.delta)
                if generation.should_stop():
                    break
        finally:
            replies.close()  # leaving the stream closes its HTTP response
        return "".join(pieces)
