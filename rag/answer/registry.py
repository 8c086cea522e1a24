"""Answerers by name: the one place that maps QABOT_ANSWERER to a chat client.

`extractive` needs no client. Each other name maps to a small factory that builds a
`ChatClient` from the settings: `llamacpp` runs a GGUF in process, the others wrap a
llama-index client. Adding a provider is adding one entry to `LLM_FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import SettingsError
from ..settings import Settings
from .chat_client import ChatClient

if TYPE_CHECKING:
    from .llm import LLMAnswerer

DEFAULT_MODELS = {"openai": "gpt-4o-mini", "ollama": "llama3.1", "anthropic": "claude-haiku-4-5"}

#: Stop strings the OpenAI chat API accepts per request.
OPENAI_MAX_STOP = 4


def _llamacpp(settings: Settings, model: str) -> ChatClient:
    from .llamacpp import LlamaCpp

    return LlamaCpp.from_settings(settings)


def _openai(settings: Settings, model: str) -> ChatClient:
    from .llamaindex_chat import LlamaIndexChat

    name = f"openai:{model}"
    if settings.llm_base_url:  # any OpenAI-compatible server: llama.cpp, vLLM, LM Studio, OpenRouter...
        from llama_index.llms.openai_like import OpenAILike

        llm = OpenAILike(
            model=model,
            api_base=settings.llm_base_url,
            api_key=settings.openai_api_key or "not-needed",
            is_chat_model=True,
            context_window=8192,
            max_tokens=settings.llm_max_tokens,
            timeout=settings.llm_timeout,
            max_retries=0,  # llama-index wraps the SDK's retries in its own: 1 would mean 4 calls
        )
        # Local servers run models whose chat template may not stop them: send the turn markers.
        return LlamaIndexChat(llm, name, stop_limit=OPENAI_MAX_STOP, schema_parameter="response_format")
    if not settings.openai_api_key:
        raise SettingsError("QABOT_ANSWERER=openai needs OPENAI_API_KEY (or QABOT_LLM_BASE_URL for a local server)")
    from llama_index.llms.openai import OpenAI

    llm = OpenAI(model=model, api_key=settings.openai_api_key, timeout=settings.llm_timeout, max_retries=0,
                 max_tokens=settings.llm_max_tokens)
    return LlamaIndexChat(llm, name, schema_parameter="response_format")


def _ollama(settings: Settings, model: str) -> ChatClient:
    from llama_index.llms.ollama import Ollama

    from .llamaindex_chat import LlamaIndexChat

    llm = Ollama(
        model=model,
        base_url=settings.llm_base_url or "http://localhost:11434",
        request_timeout=settings.llm_timeout,
        context_window=8192,  # known up front: saves a /api/show round trip per process
        additional_kwargs={"num_predict": settings.llm_max_tokens},
    )
    return LlamaIndexChat(llm, f"ollama:{model}", schema_parameter="format")


def _anthropic(settings: Settings, model: str) -> ChatClient:
    if not settings.anthropic_api_key:
        raise SettingsError("QABOT_ANSWERER=anthropic needs ANTHROPIC_API_KEY")
    from llama_index.llms.anthropic import Anthropic

    from .llamaindex_chat import LlamaIndexChat

    llm = Anthropic(
        model=model,
        api_key=settings.anthropic_api_key,
        base_url=settings.llm_base_url or None,
        timeout=settings.llm_timeout,
        max_retries=0,
        max_tokens=settings.llm_max_tokens,
    )
    return LlamaIndexChat(llm, f"anthropic:{model}")


LLM_FACTORIES: dict[str, Callable[[Settings, str], ChatClient]] = {
    "llamacpp": _llamacpp,
    "openai": _openai,
    "ollama": _ollama,
    "anthropic": _anthropic,
}


def make_client(settings: Settings) -> ChatClient:
    """The chat client that `settings.answerer` names."""
    try:
        factory = LLM_FACTORIES[settings.answerer]
    except KeyError:
        raise SettingsError(f"QABOT_ANSWERER={settings.answerer}: not an LLM answerer") from None
    return factory(settings, settings.llm_model or DEFAULT_MODELS.get(settings.answerer, ""))


def check_llm(settings: Settings) -> None:
    """Raise what building the answerer would raise, without loading a model (for `qabot health`)."""
    if settings.answerer == "llamacpp":
        from .llamacpp import LlamaCpp

        LlamaCpp.check(settings)
    elif settings.answerer != "extractive":
        make_client(settings)  # the remote clients are cheap to build and check their keys


def build_llm_answerer(settings: Settings) -> LLMAnswerer | None:
    """The LLM answerer the settings name, or None for the offline extractive answerer."""
    if settings.answerer == "extractive":
        return None
    from .llm import LLMAnswerer

    return LLMAnswerer(make_client(settings), settings)
