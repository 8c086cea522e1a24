"""Checks on an LLM reply before anyone sees it: leaked instructions, obeyed injections.

The prompt already tells the model that sources are untrusted data; these checks assume it
may not listen (OWASP LLM01 prompt injection, LLM07 system prompt leakage) and discard a
reply that repeats its instructions — plainly, spaced out or base64-encoded — or that
carries the payload of an instruction hidden in a retrieved article.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable

_WORD = re.compile(r"\w+")
_B64 = re.compile(r"[A-Za-z0-9+/]{12,}={0,2}")
_QUOTED = re.compile(r"[\"“][^\"“”]*[\"”]")
_INJECTION_PAYLOAD = re.compile(
    r"(?i)\b(?:reply|respond|answer|say|output|print|write|return)\s+(?:only\s+|just\s+|exactly\s+)?"
    r"(?:with\s+)?(?:the\s+(?:text|words?|phrase)\s+)?[:\-]?\s*[\"'“‘]([^\"'”’\n]{3,120})[\"'”’]"
)
_INJECTION_HINT = re.compile(
    r"(?i)\b(ignore|disregard|forget)\s+(all\s+|any\s+|the\s+)?(previous|prior|above|earlier|your)\s+(instructions|prompts?|rules)"
    r"|\bsystem prompt\b|\byou are now\b|\bnew instructions\b"
)


def _alnum(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch.isalnum())


def _decoded_variants(reply: str) -> list[str]:
    """The reply as written, with separators removed, and any base64 runs decoded."""
    variants = [reply.lower(), _alnum(reply)]
    for token in _B64.findall(reply):
        padded = token + "=" * (-len(token) % 4)
        try:
            decoded = base64.b64decode(padded, validate=True).decode("utf-8", errors="ignore")
        except (binascii.Error, ValueError):
            continue
        if decoded:
            variants += [decoded.lower(), _alnum(decoded)]
    return variants


def secret_tokens(text: str) -> set[str]:
    """Tokens of the system prompt that look like identifiers or canaries (letters and digits, ≥ 8)."""
    return {t.lower() for t in re.findall(r"[\w-]{8,}", text) if any(c.isdigit() for c in t) and any(c.isalpha() for c in t)}


def leaks_prompt(reply: str, system: str, allowed: str = "", shingle: int = 8) -> bool:
    """Whether `reply` repeats the system prompt: a run of `shingle` words, or one of its rare tokens.

    Text that also stands in `allowed` (the sources, the question) is not a leak.
    """
    words = _WORD.findall(system.lower())
    reply_words = " ".join(_WORD.findall(reply.lower()))
    allowed_words = " ".join(_WORD.findall(allowed.lower()))
    for i in range(len(words) - shingle + 1):
        run = " ".join(words[i : i + shingle])
        if run in reply_words and run not in allowed_words:
            return True
    variants = _decoded_variants(reply)
    allowed_alnum = _alnum(allowed)
    for token in secret_tokens(system):
        bare = _alnum(token)
        if bare in allowed_alnum:
            continue
        if any(token in v or bare in v for v in variants):
            return True
    return False


def injection_payloads(texts: Iterable[str]) -> set[str]:
    """Strings that retrieved articles instruct the model to output ("reply only with 'X'")."""
    payloads: set[str] = set()
    for text in texts:
        if not _INJECTION_HINT.search(text) and not _INJECTION_PAYLOAD.search(text):
            continue
        payloads.update(m.group(1).strip() for m in _INJECTION_PAYLOAD.finditer(text))
    return {p for p in payloads if len(_alnum(p)) >= 3}


def obeys_injection(reply: str, payloads: set[str]) -> bool:
    """Whether the reply says an injected payload outside of a quotation."""
    if not payloads:
        return False
    outside = _alnum(_QUOTED.sub(" ", reply))
    return any(_alnum(p) in outside for p in payloads)
