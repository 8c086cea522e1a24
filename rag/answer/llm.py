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
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..quotes import fragments, normalize
from ..retrieve import Hit, KeywordIndex
from ..settings import Settings
from ..types import Answer, Source, Turn
from .chat_client import ChatClient, Generation, LLMError, Message
from .extractive import ExtractiveAnswerer
from . import structured
from .attribution import Attribution, attribute
from .evidence import Evidence
from .excerpts import as_hits, excerpts, mode_for
from .grounding import Grounded, ground, source_urls, strip_links
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
        # A JSON reply under a schema, where the backend can enforce one (structured.py)
        self.structured = settings.llm_structured and getattr(client, "structured", False)
        self.tag = new_tag()  # the source fences' tag: drawn once, so the whole system prompt is cached (prompts.py)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=settings.max_concurrent + 2, thread_name_prefix="llm")

    # -- calls ------------------------------------------------------------------------------------
    def _generate(
        self,
        messages: Sequence[Message],
        *,
        max_tokens: int,
        stop: Sequence[str] = TURN_MARKERS,
        on_token: Callable[[str], None] | None = None,
        schema: dict[str, Any] | None = None,
    ) -> str:
        """One streamed call, stopped at QABOT_LLM_TIMEOUT; raises LLMError with a short reason."""
        timeout = self.settings.llm_timeout
        generation = Generation(timeout, max_tokens=max_tokens, stop=stop, on_token=on_token, schema=schema)
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
        evidence: Evidence | None = None,
    ) -> Answer:
        """The LLM's grounded answer, or the offline one with a notice saying why the LLM's was not used.

        `evidence` (the ranked sentences of `hits`) lets a local model read only the best sentences
        (excerpts.py); without it the model reads whole chunks.
        """

        def offline(reason: str) -> Answer:
            log.warning("%s reply not used (%s); giving the offline answer", self.name, reason)
            fallback = extractive.answer(standalone, hits, keyword, vector)
            return replace(
                fallback,
                question=question,
                backend=f"extractive (fallback from {self.name})",
                notice=f"The {self.name} model did not give a usable answer ({reason}); this is the offline answer.",
                llm_use=f"fallback: {reason}",
            )

        tag = self.tag
        chosen = excerpts(hits, evidence, mode_for(self.settings.llm_excerpts, self.settings.answerer))
        extra = "\n".join(x for x in (self.system_extra, structured.INSTRUCTION if self.structured else "") if x)
        messages = [
            {"role": "system", "content": system_prompt(tag, extra)},
            {"role": "user", "content": user_prompt(standalone, as_hits(chosen), tag)},
        ]
        sent = [e.hit for e in chosen]  # what the model's source numbers point to
        listener = on_token
        if self.structured and on_token is not None:  # the user sees the answer field, not JSON
            field_stream = structured.AnswerStream()

            def listener(delta: str) -> None:
                text = field_stream.feed(delta)
                if text:
                    on_token(text)

        try:
            raw = self._generate(messages, max_tokens=self.settings.llm_max_tokens, on_token=listener,
                                 schema=structured.SCHEMA if self.structured else None)
        except LLMError as exc:
            return offline(str(exc))
        log.debug("%s raw reply (%d chars): %s", self.name, len(raw), raw[:MAX_REPLY_CHARS])
        if self.structured:
            text = structured.reply_text(raw)
            if text is None:
                return offline("malformed reply")
            raw = text
        # A small model's template echoes first: the turns it invents, then fences it copies. Neither
        # is the model repeating its instructions, so both go before any check reads the reply.
        raw, fences = strip_fences(cut_at_turn_marker(raw))
        if fences:
            log.info("%s reply echoed %d source fence(s); removed", self.name, fences)
        if not raw.strip():
            return offline("it only echoed source markup" if fences else "empty reply")
        sources_text = "\n".join(e.text for e in chosen)
        rules = instructions(extra).replace(DONT_KNOW, "")
        if leaks_prompt(raw, rules, allowed=f"{sources_text}\n{question}\n{standalone}"):
            return offline("the reply repeated its instructions")
        if obeys_injection(raw, injection_payloads(e.text for e in chosen)):
            return offline("it followed instructions hidden in an article")
        raw = _cap(raw)
        if DONT_KNOW.lower().rstrip(".") in raw.lower() and not re.search(r"\[\d+\]", raw):
            # The evidence and the reader found the answer in these articles (the pipeline refuses before
            # asking otherwise); a model that does not see it (a small one often says so to a yes/no
            # question) does not outweigh them: the offline answer, with its quotes to check, is shown.
            return offline("it said the articles do not answer this")
        # Numbered as the model saw them, then the retrieved chunks it did not see: a sentence may be
        # supported by one of those (the byline's article, read in sentences mode) and is cited to it.
        numbered = sent + [h for h in hits if all(h is not s for s in sent)]
        attribution = attribute(standalone, strip_links(raw, source_urls(numbered)), numbered, extractive.sentences)
        if not attribution.supported:
            return offline("it echoed a source instead of answering" if fences
                           else "nothing it said is supported by the articles")
        grounded = ground(_cited(attribution, raw), numbered)
        notices = []
        invalid = sorted({n for _, _, cited in attribution.sentences for n in cited if not 1 <= n <= len(sent)})
        if invalid:
            notices.append(f"Removed citation(s) {', '.join(f'[{n}]' for n in invalid)} to sources that do not exist.")
        if attribution.dropped:
            notices.append(f"Left out {len(attribution.dropped)} sentence(s) of the {self.name} reply that no article "
                           "supports.")
        if grounded.unverified_quotes:
            notices.append("Quotes marked [unverified quote] were not found in the cited article.")
        sources = _sources(attribution, grounded, numbered)
        use = "as written" if attribution.as_written else "attributed"
        return Answer(question, grounded.text, sources, backend=self.name, notice=" ".join(notices), llm_use=use)


def _sources(attribution: Attribution, grounded: Grounded, numbered: Sequence[Hit]) -> tuple[Source, ...]:
    """The cited sources, each quoting the sentences that support the answer (and the model's own verified
    quotes that those do not already show), in article order."""
    quotes: dict[int, list[str]] = {}  # by number in `numbered`; repeats go with the containment check below
    for _, support in attribution.supported:
        quotes.setdefault(support.source, []).append(support.quote)
    sources = []
    for n in grounded.cited:
        hit = grounded.hit_for[n]
        shown = quotes.get(numbered.index(hit) + 1, []) + grounded.quotes.get(n, [])
        # a quote another one already shows (a sentence, and the same sentence quoted with its neighbour) goes
        shown = [q for i, q in enumerate(shown) if not any(j != i and _holds(other, q) and (not _holds(q, other) or j < i)
                                                           for j, other in enumerate(shown))]
        article = [h for h in numbered if h.doc_id == hit.doc_id]
        shown.sort(key=lambda q: _position(q, article))
        sources.append(Source(
            n=n, doc_id=hit.doc_id, title=str(hit.metadata.get("title", "")), date=str(hit.metadata.get("date", "")),
            url=str(hit.metadata.get("url", "")), quote=" … ".join(q for q in shown if q), score=round(hit.dense, 4),
            chunk_id=hit.chunk_id,
        ))
    return tuple(sources)


def _cite(sentence: str, n: int) -> str:
    """The sentence with "[n]" before its final full stop ("…the deal [1].")."""
    end = re.search(r"[.!?]+$", sentence)
    return f"{sentence[:end.start()]} [{n}]{end.group()}" if end else f"{sentence} [{n}]"


def _holds(quote: str, other: str) -> bool:
    """Whether `quote` shows every fragment of `other` already."""
    return all(f in normalize(quote) for f in fragments(other))


def _position(quote: str, article: Sequence[Hit]) -> int:
    """Where a verbatim quote starts in its article (compared normalised, placed by its chunk's offset), so a
    source's quotes show in article order and verify as one quote. A supporting sentence may stand in another
    retrieved chunk of the article than the cited one (recorded: Qwen's two sentences on m10)."""
    first = next(iter(fragments(quote)), "")
    found = [int(h.metadata.get("start", 0)) + at for h in article if first and (at := normalize(h.text).find(first)) >= 0]
    return min(found, default=sys.maxsize)


def _cited(attribution: Attribution, raw: str) -> str:
    """The supported sentences, each cited to the source that supports it (a list stays a list)."""
    parts = [_cite(text, support.source) for text, support in attribution.supported]
    listed = sum(bool(line.strip()) for line in raw.splitlines()) > 1
    return "\n".join(f"- {p}" for p in parts) if listed and len(parts) > 1 else " ".join(parts)


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
