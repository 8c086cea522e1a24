"""Answerers by name: the one place that maps QABOT_ANSWERER to an LLM client.

`extractive` needs no client. Each other name maps to a small factory that builds the
llama-index client from the settings; adding a provider is adding one entry to `LLM_FACTORIES`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..errors import SettingsError
from ..settings import Settings

if TYPE_CHECKING:
    from .llm import LLMAnswerer

DEFAULT_MODELS = {"openai": "gpt-4o-mini", "ollama": "llama3.1", "anthropic": "claude-haiku-4-5"}


def _openai(settings: Settings, model: str) -> Any:
    if settings.llm_base_url:  # any OpenAI-compatible server: vLLM, LM Studio, llama.cpp, OpenRouter...
        from llama_index.llms.openai_like import OpenAILike

        return OpenAILike(
            model=model,
            api_base=settings.llm_base_url,
            api_key=settings.openai_api_key or "not-needed",
            is_chat_model=True,
            context_window=8192,
            timeout=settings.llm_timeout,
            max_retries=0,  # llama-index wraps the SDK's retries in its own: 1 would mean 4 calls
        )
    if not settings.openai_api_key:
        raise SettingsError("QABOT_ANSWERER=openai needs OPENAI_API_KEY (or QABOT_LLM_BASE_URL for a local server)")
    from llama_index.llms.openai import OpenAI

    return OpenAI(model=model, api_key=settings.openai_api_key, timeout=settings.llm_timeout, max_retries=0)


def _ollama(settings: Settings, model: str) -> Any:
    from llama_index.llms.ollama import Ollama

    return Ollama(
        model=model,
        base_url=settings.llm_base_url or "http://localhost:11434",
        request_timeout=settings.llm_timeout,
        context_window=8192,  # known up front: saves a /api/show round trip per process
    )


def _anthropic(settings: Settings, model: str) -> Any:
    if not settings.anthropic_api_key:
        raise SettingsError("QABOT_ANSWERER=anthropic needs ANTHROPIC_API_KEY")
    from llama_index.llms.anthropic import Anthropic

    return Anthropic(
        model=model,
        api_key=settings.anthropic_api_key,
        base_url=settings.llm_base_url or None,
        timeout=settings.llm_timeout,
        max_retries=0,
        max_tokens=512,
    )


LLM_FACTORIES: dict[str, Callable[[Settings, str], Any]] = {
    "openai": _openai,
    "ollama": _ollama,
    "anthropic": _anthropic,
}


def make_llm(settings: Settings) -> Any:
    """The llama-index LLM client that `settings.answerer` names."""
    try:
        factory = LLM_FACTORIES[settings.answerer]
    except KeyError:
        raise SettingsError(f"QABOT_ANSWERER={settings.answerer}: not an LLM answerer") from None
    return factory(settings, settings.llm_model or DEFAULT_MODELS[settings.answerer])


def build_llm_answerer(settings: Settings) -> LLMAnswerer | None:
    """The LLM answerer the settings name, or None for the offline extractive answerer."""
    if settings.answerer == "extractive":
        return None
    from .llm import LLMAnswerer

    return LLMAnswerer(make_llm(settings), settings)
