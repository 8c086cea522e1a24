"""The LLM answerer: any llama-index chat client (see `registry`) over fenced, numbered sources.

The LLM only ever improves on the offline answer: any failure (unreachable, error status,
rate limit, malformed reply, timeout, an answer with no valid citation, a leaked system
prompt) yields the extractive answer with a one-line notice, within a bounded time.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from ..retrieve import Hit, KeywordIndex
from ..settings import Settings
from ..types import Answer, Source, Turn
from .extractive import ExtractiveAnswerer
from .grounding import ground
from .prompts import DONT_KNOW, condense_prompt, new_tag, system_prompt, user_prompt
from .registry import DEFAULT_MODELS
from .safety import injection_payloads, leaks_prompt, obeys_injection

#: Longer replies are cut at a sentence end: a flood is never forwarded (OWASP LLM10).
MAX_REPLY_CHARS = 3000

log = logging.getLogger(__name__)
T = TypeVar("T")

class LLMError(Exception):
    """The LLM call failed; the message is a short reason fit for a notice."""


class LLMAnswerer:
    """Answers with an LLM over numbered, fenced sources, then grounds the reply."""

    def __init__(self, llm: Any, settings: Settings) -> None:
        self.llm = llm
        self.settings = settings
        self.name = f"{settings.answerer}:{settings.llm_model or DEFAULT_MODELS[settings.answerer]}"
        self.system_extra = settings.llm_instructions
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="llm")

    # -- calls ------------------------------------------------------------------------------------
    def _call(self, fn: Callable[[], T]) -> T:
        """Run one client call with a hard deadline, whatever the client's own timeout does."""
        future = self._pool.submit(fn)
        try:
            return future.result(timeout=self.settings.llm_timeout + 2)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise LLMError(f"no reply within {self.settings.llm_timeout:g} s") from None
        except Exception as exc:  # every client raises its own hierarchy; all mean "no answer"
            raise LLMError(_reason(exc)) from None

    def condense(self, question: str, history: Sequence[Turn]) -> tuple[str, str]:
        """A standalone version of a follow-up question (the question itself on failure)."""
        from llama_index.core.llms import ChatMessage

        try:
            reply = self._call(lambda: self.llm.chat([ChatMessage(role="user", content=condense_prompt(question, history))]))
        except LLMError as exc:
            return question, f"Could not reach the {self.name} model to read the conversation ({exc})."
        text = (reply.message.content or "").strip().splitlines()
        standalone = text[0].strip().strip('"') if text else ""
        if not standalone or len(standalone) > self.settings.max_question_chars:
            return question, ""
        return standalone, ""

    def answer(
        self,
        question: str,
        standalone: str,
        hits: Sequence[Hit],
        history: Sequence[Turn],
        keyword: KeywordIndex,
        vector: Sequence[float],
        extractive: ExtractiveAnswerer,
    ) -> Answer:
        from llama_index.core.llms import ChatMessage

        def offline(reason: str) -> Answer:
            fallback = extractive.answer(standalone, hits, keyword, vector)
            return replace(
                fallback,
                question=question,
                backend=f"extractive (fallback from {self.name})",
                notice=f"The {self.name} model did not give a usable answer ({reason}); this is the offline answer.",
            )

        tag = new_tag()
        system = system_prompt(tag, self.system_extra)
        messages = [
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=user_prompt(standalone, hits, tag)),
        ]
        try:
            reply = self._call(lambda: self.llm.chat(messages))
        except LLMError as exc:
            log.warning("LLM answer failed: %s", exc)
            return offline(str(exc))
        raw = reply.message.content or ""
        if not isinstance(raw, str) or not raw.strip():
            return offline("empty reply")
        sources_text = "\n".join(h.text for h in hits)
        if leaks_prompt(raw, system.replace(DONT_KNOW, ""), allowed=f"{sources_text}\n{question}\n{standalone}"):
            log.warning("LLM reply repeated the system prompt; discarded")
            return offline("the reply repeated its instructions")
        if obeys_injection(raw, injection_payloads(h.text for h in hits)):
            log.warning("LLM reply followed an instruction found in a retrieved article; discarded")
            return offline("it followed instructions hidden in an article")
        raw = _cap(raw)
        if DONT_KNOW.lower().rstrip(".") in raw.lower() and not re.search(r"\[\d+\]", raw):
            return Answer(question, DONT_KNOW, refused=True, backend=self.name)
        grounded = ground(raw, hits)
        if not grounded.cited:
            return offline("it cited no existing source")
        sources = []
        for n in grounded.cited:
            hit = grounded.hit_for[n]
            quotes = grounded.quotes.get(n) or [extractive.best_quote(vector, standalone, hit, keyword)]
            sources.append(
                Source(
                    n=n,
                    doc_id=hit.doc_id,
                    title=str(hit.metadata.get("title", "")),
                    date=str(hit.metadata.get("date", "")),
                    url=str(hit.metadata.get("url", "")),
                    quote=" … ".join(q for q in quotes if q),
                    score=round(hit.dense, 4),
                    chunk_id=hit.chunk_id,
                )
            )
        notices = []
        if grounded.removed_citations:
            listed = ", ".join(f"[{n}]" for n in grounded.removed_citations)
            notices.append(f"Removed citation(s) {listed} to sources that do not exist.")
        if grounded.unverified_quotes:
            notices.append("Quotes marked [unverified quote] were not found in the cited article.")
        return Answer(question, grounded.text, tuple(sources), backend=self.name, notice=" ".join(notices))


def _cap(text: str, limit: int = MAX_REPLY_CHARS) -> str:
    if len(text) <= limit:
        return text
    cut = text[:limit]
    end = max(cut.rfind(". "), cut.rfind(".\n"))
    return (cut[: end + 1] if end > limit // 2 else cut.rstrip()) + " …"


def _reason(exc: BaseException) -> str:
    """A short, secret-free reason for a failed call."""
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    name = type(exc).__name__
    if status == 429:
        return "rate limited (HTTP 429)"
    if status:
        return f"HTTP {status}"
    if "Connect" in name or "connect" in str(exc).lower():
        return "cannot connect to the server"
    if "Timeout" in name:
        return "timed out"
    if isinstance(exc, ValueError | KeyError | TypeError) or "JSON" in name or "Decode" in name:
        return "malformed reply"
    return name
