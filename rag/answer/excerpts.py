"""What an LLM reads: whole retrieved chunks, or only their best sentences.

A small local model spends most of its time reading the prompt (Qwen2.5-Coder-1.5B on 2 cores: ~60
prompt tokens a second, so five chunks of ~200 wordpieces cost ~20 s before the first word, and the
first word comes when the prompt is read). The evidence ranking (evidence.py) already knows which
sentences answer; sending those keeps what the answer needs and drops most of the rest. Hosted models
read fast and gain from context, so they get whole chunks (QABOT_LLM_EXCERPTS decides; the default
depends on the backend, see `mode_for`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..nlp import annotation_of
from ..retrieve import Hit
from .evidence import Evidence

#: Evidence sentences an LLM reads in "sentences" mode, without their neighbours. Measured with Qwen2.5-
#: Coder-1.5B (2 threads) on the 29 answerable dev and more questions: the best 4 each with its neighbours,
#: a 1,581-char median user prompt, 26 replies used, 29 correct, first token 7.9 s (load ~5); the best 3
#: alone (with the byline in the source header), ~940 chars, 27 used, 28 correct (the miss: a list whose
#: third organisation stood in a neighbour), first token 3.1 s (quiet). The first token comes when the
#: prompt is read, so the prompt's length sets the wait.
PROMPT_SENTENCES = 3

#: Backends that run on the user's machine get sentences; the others whole chunks.
LOCAL_BACKENDS = frozenset({"llamacpp", "ollama"})


def mode_for(setting: str, answerer: str) -> str:
    """QABOT_LLM_EXCERPTS as set, else "sentences" for local backends and "chunks" for hosted ones."""
    return setting or ("sentences" if answerer in LOCAL_BACKENDS else "chunks")


@dataclass(frozen=True)
class Excerpt:
    """One numbered source as the model reads it: `text` is verbatim from `hit` (" … " between pieces)."""

    hit: Hit
    text: str


def excerpts(hits: Sequence[Hit], evidence: Evidence | None, mode: str) -> list[Excerpt]:
    """The sources to put in the prompt: whole hits in retrieval order, or ("sentences") the chunks that hold a
    chosen sentence, grouped by article (best article first) and in reading order within it."""
    if mode != "sentences" or evidence is None or not evidence.sentences:
        return [Excerpt(h, h.text) for h in hits]
    chosen: dict[int, set[int]] = {}  # id(hit) -> sentence positions
    for s in evidence.sentences[:PROMPT_SENTENCES]:
        chosen.setdefault(id(s.hit), set()).add(s.position)
    # One article's chunks side by side, in reading order (they overlap: a sentence is sent once).
    doc_rank = {h.doc_id: r for r, h in reversed(list(enumerate(hits)))}
    ordered = sorted((h for h in hits if id(h) in chosen),
                     key=lambda h: (doc_rank[h.doc_id], int(h.metadata.get("start", 0))))
    out, sent = [], set()
    for hit in ordered:
        sentences = annotation_of(hit.text, hit.metadata).sentences
        chunk_start = int(hit.metadata.get("start", 0))
        pieces, last = [], None
        for position in sorted(chosen[id(hit)]):
            sentence = sentences[position]
            text = hit.text[sentence.start:sentence.end].strip()
            if not text or (hit.doc_id, chunk_start + sentence.start) in sent:
                continue
            sent.add((hit.doc_id, chunk_start + sentence.start))
            pieces.append(text if last is None or position == last + 1 else f"… {text}")
            last = position
        if pieces:
            out.append(Excerpt(hit, " ".join(pieces)))
    return out or [Excerpt(h, h.text) for h in hits]


def as_hits(chosen: Sequence[Excerpt]) -> list[Hit]:
    """The excerpts as hits whose text is what the model read (for the prompt only: grounding reads `hit`)."""
    return [replace(e.hit, text=e.text) for e in chosen]
