"""The LLM answerer: any `ChatClient` (see `registry`) over fenced, numbered sources.

The LLM only ever improves on the offline answer: any failure (unreachable, error status,
rate limit, malformed reply, timeout, an answer with no valid citation, a leaked system
prompt) yields the extractive answer with a one-line notice that says why, within a bounded
time. Replies stream: `on_token` sees each delta as it is generated; what is finally shown is
the grounded answer built from the whole reply, exactly as without streaming.
"""

from __future__ import annotations

import concurrent.futures
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..retrieve import Hit, KeywordIndex
from ..settings import Settings
from ..types import Answer, Source, Turn
from .chat_client import ChatClient, Generation, LLMError, Message
from .extractive import ExtractiveAnswerer
from .grounding import ground
from .prompts import (
    DONT_KNOW, TURN_MARKERS, condense_prompt, cut_at_turn_marker, instructions, new_tag, strip_fences, system_prompt,
    user_prompt,
)
from .safety import injection_payloads, leaks_prompt, obeys_injection

#: Longer replies are cut at a sentence end: a flood is never forwarded (OWASP LLM10).
MAX_REPLY_CHARS = 3000

#: Seconds past QABOT_LLM_TIMEOUT before a call that ignores its deadline (a read blocked on a
#: silent server) is abandoned; clients normally stop on their own at the deadline.
HARD_DEADLINE_GRACE_S = 2.0

#: A standalone question is one short line.
CONDENSE_MAX_TOKENS = 64

log = logging.getLogger(__name__)


class LLMAnswerer:
    """Answers with an LLM over numbered, fenced sources, then grounds the reply."""

    def __init__(self, client: ChatClient, settings: Settings) -> None:
        self.client = client
        self.settings = settings
        self.name = client.name
        self.system_extra = settings.llm_instructions
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent + 2, thread_name_prefix="llm")

    # -- calls ------------------------------------------------------------------------------------
    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = TURN_MARKERS,
        on_token: Callable[[str], None] | None = None,
    ) -> str:
        """One streamed call, stopped at QABOT_LLM_TIMEOUT; raises LLMError with a short reason."""
        timeout = self.settings.llm_timeout
        generation = Generation(timeout, max_tokens=max_tokens, stop=stop, on_token=on_token)
        future = self._pool.submit(self.client.stream, messages, generation)
        try:
            text = future.result(timeout=timeout + HARD_DEADLINE_GRACE_S)
        except concurrent.futures.TimeoutError:
            raise LLMError(f"no reply within {timeout:g} s") from None
        except LLMError:
            raise
        except Exception as exc:  # every client raises its own hierarchy; all mean "no answer"
            raise LLMError(_reason(exc)) from None
        finally:
            generation.close()  # whatever happens here, the model stops and nothing more is streamed
        if generation.stopped_early:
            raise LLMError(f"no reply within {timeout:g} s")
        return text

    def condense(self, question: str, history: Sequence[Turn]) -> tuple[str, str]:
        """A standalone version of a follow-up question (the question itself on failure)."""
        messages = [{"role": "user", "content": condense_prompt(question, history)}]
        try:
            reply = self._generate(messages, max_tokens=CONDENSE_MAX_TOKENS, stop=("\n", *TURN_MARKERS))
        except LLMError as exc:
            return question, f"Could not reach the {self.name} model to read the conversation ({exc})."
        text = cut_at_turn_marker(reply).strip().splitlines()
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
        on_token: Callable[[str], None] | None = None,
    ) -> Answer:
        """The LLM's grounded answer, or the offline one with a notice saying why the LLM's was not used."""

        def offline(reason: str) -> Answer:
            log.warning("%s reply not used (%s); giving the offline answer", self.name, reason)
            fallback = extractive.answer(standalone, hits, keyword, vector)
            return replace(
                fallback,
                question=question,
                backend=f"extractive (fallback from {self.name})",
                notice=f"The {self.name} model did not give a usable answer ({reason}); this is the offline answer.",
            )

        tag = new_tag()
        messages = [
            {"role": "system", "content": system_prompt(tag, self.system_extra)},
            {"role": "user", "content": user_prompt(standalone, hits, tag)},
        ]
        try:
            raw = self._generate(messages, max_tokens=self.settings.llm_max_tokens, on_token=on_token)
        except LLMError as exc:
            return offline(str(exc))
        # A small model's template echoes first: the turns it invents, then fences it copies. Neither
        # is the model repeating its instructions, so both go before any check reads the reply.
        raw, fences = strip_fences(cut_at_turn_marker(raw))
        if fences:
            log.info("%s reply echoed %d source fence(s); removed", self.name, fences)
        if not raw.strip():
            return offline("it only echoed source markup" if fences else "empty reply")
        sources_text = "\n".join(h.text for h in hits)
        rules = instructions(self.system_extra).replace(DONT_KNOW, "")
        if leaks_prompt(raw, rules, allowed=f"{sources_text}\n{question}\n{standalone}"):
            return offline("the reply repeated its instructions")
        if obeys_injection(raw, injection_payloads(h.text for h in hits)):
            return offline("it followed instructions hidden in an article")
        raw = _cap(raw)
        if DONT_KNOW.lower().rstrip(".") in raw.lower() and not re.search(r"\[\d+\]", raw):
            return Answer(question, DONT_KNOW, refused=True, backend=self.name)
        grounded = ground(raw, hits)
        if not grounded.cited:
            return offline("it echoed a source instead of answering" if fences else "it cited no existing source")
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
