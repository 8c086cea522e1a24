"""Structured replies: the model writes `{"answer": "...", "sources": [n, ...]}` under a JSON schema.

Where the backend can constrain decoding to a schema (llama.cpp's grammar, in process and on
`llama-server`; OpenAI's `response_format`), a small model cannot wander off into turns it invents or
forget to say which excerpts it used. The reply is still judged on what it says (attribution.py):
`sources` only tells which excerpts the model meant, as "[n]" would.

While it streams, the user sees the answer field being written, not JSON (`AnswerStream`).
"""

from __future__ import annotations

import json
from typing import Any

#: The reply's shape: a short answer and the excerpt numbers it rests on.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "sources": {"type": "array", "items": {"type": "integer", "minimum": 1}},
    },
    "required": ["answer", "sources"],
    "additionalProperties": False,
}

#: Added to the rules when the reply is structured, so the model knows what the fields hold.
INSTRUCTION = ('Reply with a JSON object: "answer" holds your answer (a few sentences, with [n] citations), '
               '"sources" the numbers of the excerpts it uses.')


def reply_text(raw: str) -> str | None:
    """The structured reply as qabot's usual reply text ("answer [n][m]"), or None when it is not the object."""
    try:
        data = json.loads(raw)
    except ValueError:  # cut short (the token limit, the deadline): the answer written so far, if any
        partial = AnswerStream()
        partial.feed(raw)
        return partial.text.strip() or None
    if not isinstance(data, dict) or not isinstance(data.get("answer"), str):
        return None
    answer = data["answer"].strip()
    sources = [n for n in data.get("sources") or [] if isinstance(n, int) and not isinstance(n, bool)]
    if sources and "[" not in answer:  # the sources of an answer that cites nothing itself
        answer = f"{answer} {''.join(f'[{n}]' for n in dict.fromkeys(sources))}"
    return answer


class AnswerStream:
    """Turns the streamed JSON text into the answer field's text, delta by delta (for `on_token`)."""

    KEY = '"answer"'

    def __init__(self) -> None:
        self._raw = ""
        self._shown = 0  # characters of the decoded answer already handed on

    @property
    def text(self) -> str:
        """The answer field as far as it has been written."""
        return self._decoded()

    def feed(self, delta: str) -> str:
        """The answer text that `delta` completes (may be "")."""
        self._raw += delta
        text = self._decoded()
        new = text[self._shown:]
        self._shown = len(text)
        return new

    def _decoded(self) -> str:
        at = self._raw.find(self.KEY)
        if at < 0:
            return ""
        colon = self._raw.find(":", at + len(self.KEY))
        opening = self._raw.find('"', colon + 1) if colon >= 0 else -1
        if opening < 0:
            return ""
        out, i, raw = [], opening + 1, self._raw
        while i < len(raw):
            ch = raw[i]
            if ch == '"':
                break
            if ch == "\\":
                if i + 1 >= len(raw):
                    break  # the escape is not complete yet
                code = raw[i + 1]
                if code == "u":
                    if i + 6 > len(raw):
                        break
                    try:
                        out.append(chr(int(raw[i + 2:i + 6], 16)))
                    except ValueError:
                        pass
                    i += 6
                    continue
                out.append({"n": "\n", "t": "\t", "r": "", "b": "", "f": ""}.get(code, code))
                i += 2
                continue
            out.append(ch)
            i += 1
        return "".join(out)
