"""Any llama-index chat LLM (OpenAI, OpenAI-compatible servers, Ollama, Anthropic) as a `ChatClient`.

Replies are always streamed: the user sees tokens as they come, and a call past its deadline
is stopped between two chunks, which closes the connection (llama.cpp's and vLLM's servers
then cancel the generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .chat_client import Generation, Message


#: How each API takes a JSON schema to constrain the reply to (structured.py): OpenAI's chat API (and
#: the servers that copy it) as `response_format`, Ollama's as `format` (a schema since Ollama 0.5).
SCHEMA_PARAMETERS = ("response_format", "format")


class LlamaIndexChat:
    """Streams from a llama-index LLM client built by `registry`."""

    def __init__(self, llm: Any, name: str, *, stop_limit: int = 0, schema_parameter: str = "") -> None:
        if schema_parameter not in ("", *SCHEMA_PARAMETERS):
            raise ValueError(f"unknown schema parameter {schema_parameter!r}")
        self.llm = llm
        self.name = name
        self.stop_limit = stop_limit  # stop strings the server accepts (OpenAI: 4; 0 = send none)
        self.schema_parameter = schema_parameter  # "" = the API cannot constrain a reply to a schema
        self.structured = bool(schema_parameter)

    def stream(self, messages: Sequence[Message], generation: Generation) -> str:
        from llama_index.core.llms import ChatMessage

        chat = [ChatMessage(role=m["role"], content=m["content"]) for m in messages]
        extra: dict[str, Any] = {"stop": list(generation.stop[: self.stop_limit])} if self.stop_limit else {}
        if generation.schema is not None and self.schema_parameter == "response_format":
            extra["response_format"] = {"type": "json_schema",
                                        "json_schema": {"name": "answer", "schema": generation.schema, "strict": True}}
        elif generation.schema is not None and self.schema_parameter == "format":
            extra["format"] = generation.schema
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
