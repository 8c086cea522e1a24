"""Answerers by name: the one place that maps QABOT_ANSWERER to a class."""

from __future__ import annotations

from ..settings import Settings


def build_llm_answerer(settings: Settings):  # -> LLMAnswerer | None
    """The LLM answerer the settings name, or None for the offline extractive answerer."""
    if settings.answerer == "extractive":
        return None
    from .llm import LLMAnswerer, make_llm

    return LLMAnswerer(make_llm(settings), settings)
