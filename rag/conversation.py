"""Follow the topic of a conversation offline: is a question a follow-up, and what does it refer to?

`resolve(question, history)` reads the whole conversation, turn by turn: turn 1 is resolved on its
own, turn 2 given turn 1's resolution, and so on, so a follow-up to a follow-up keeps the topic and
a self-contained new question starts a new one. The decision is made from spaCy's parse of each
question (`rag.nlp.english()`, one call per question, cached), not from a list of phrases:

- A question *refers back* when it holds a third-person personal pronoun (it, they, he, her, its,
  their...), a demonstrative (this, that, these, there, then), a word that presupposes an earlier set
  (else, other, another), or starts with a coordinating conjunction ("and who else...?").
- A question is *elliptical* when it has no verb at all ("what about Germany?", "when?", "and the
  other one?"): the missing part is the earlier topic. A named entity in it replaces the topic's entity
  of the same kind ("what about Germany?" after a question about Poland asks about Germany).
- Otherwise a question is self-contained when it names something of its own: a named entity, a
  proper noun, or a content noun that is not a bare definite description. "Who signed the deal?"
  names nothing of its own ("the deal" is the one already talked about), so after earlier turns it
  is a follow-up; "Which German newspaper reported the cabinet session?" names its own and is left
  alone.

The topic of a turn is its own named entities and noun phrases (the entities first), followed by the
topic it inherited when it is a follow-up; a "he/she" or "there" whose kind of antecedent (a person, a
place) the topic lacks takes the nearest such entity of the earlier answers, most recent first. The
answers of the current topic are split into the sentences they quoted: `shown`, so the answerer can
give new evidence rather than repeat an earlier answer word for word.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from .nlp import english, preload
from .text import split_sentences
from .types import Turn

#: How many earlier exchanges the chat and the Discord bot hand to `resolve()`. A topic rarely lasts
#: longer than a dozen turns; resolution costs one cached parse per turn, so this bounds memory only.
CONVERSATION_TURNS = 12

#: Most phrases a follow-up inherits (its own phrases come in front, most recent first): beyond four
#: the oldest phrases only dilute retrieval; the topics in tests/data/conversations.jsonl need three.
MAX_TOPIC_PHRASES = 4

#: spaCy entity labels that name a topic; DATE, CARDINAL, PERCENT... are details asked about, not topics.
TOPIC_LABELS = frozenset({"PERSON", "NORP", "FAC", "ORG", "GPE", "LOC", "PRODUCT", "EVENT", "WORK_OF_ART", "LAW"})
#: The kind of antecedent a pronoun asks for, by lemma: a person for he/she, a place for there.
_PERSON_PRONOUNS = frozenset({"he", "she", "him", "her", "his", "hers"})
_PLACE_LABELS = frozenset({"GPE", "LOC", "FAC"})
#: Closed-class words that presuppose a set already given ("who else", "what other countries").
_ALTERNATIVE_WORDS = frozenset({"else", "other", "another"})
_CITATION = re.compile(r"\s*\[\d+\]\s*")


@dataclass(frozen=True)
class Resolved:
    """A question read in the light of its conversation."""

    query: str  # what to retrieve and judge evidence with: the question, plus its topic for a follow-up
    follow_up: bool = False
    topic: str = ""  # the entities/phrases carried from earlier turns ("" if none)
    shown: tuple[str, ...] = ()  # sentences already quoted in earlier answers of this topic


@dataclass(frozen=True)
class _Phrase:
    text: str
    label: str  # a spaCy entity label, or "NP" for a noun phrase that is not a named entity


@dataclass(frozen=True)
class _Reading:
    """What one parse says about a question."""

    phrases: tuple[_Phrase, ...]  # its own entities and key noun phrases, entities first
    refers_back: bool  # a pronoun, demonstrative, "else/other" or a leading "and"
    elliptical: bool  # no verb: the rest is the earlier topic
    definite_only: bool  # its only nouns are definite descriptions ("the deal")
    wants_person: bool  # he/she/him/her...
    wants_place: bool  # there


@dataclass
class _State:
    topic: list[_Phrase] = field(default_factory=list)
    shown: list[str] = field(default_factory=list)


def prepare() -> threading.Thread:
    """Load the parser follow-ups need on a background thread (chat and Discord open with it)."""
    return preload()


def resolve(question: str, history: Sequence[Turn]) -> Resolved:
    """Resolve `question` after `history` (oldest first), replaying the conversation turn by turn."""
    if not history:
        # Nothing to refer back to. Not parsing also keeps a one-off `ask` from importing spaCy
        # (~2.8 s cold here: thinc imports torch when it is installed).
        return Resolved(question)
    state = _State()
    answers: list[str] = []  # earlier answers, oldest first
    for turn in history:
        if turn.question.strip():
            _step(turn.question, state, answers)
        answers.append(turn.answer)
        state.shown.extend(s for s in quoted_sentences(turn.answer) if s not in state.shown)
    if not _step(question, state, answers):
        return Resolved(question)
    reading = _read(question)
    carried = [p.text for p in state.topic if p not in reading.phrases and p.text.lower() not in question.lower()]
    # "Prague" and "the Prague meeting" are one topic: keep the longer phrase only.
    carried = [t for t in carried if not any(t != o and t.lower() in o.lower() for o in carried)]
    query = " ".join([question, *carried])
    return Resolved(query, True, " ".join(carried), tuple(state.shown))


def quoted_sentences(answer: str) -> list[str]:
    """The sentences an answer quoted: its cited parts ("lead [1]", "“quote” [1]"), sentence by sentence."""
    if not _CITATION.search(answer):
        return []  # a refusal or an error message quotes nothing
    out: list[str] = []
    for part in (p.strip() for p in _CITATION.split(answer)):
        if part.startswith("“") and part.endswith("”"):
            part = part[1:-1]  # the answerer's quotation marks around a supporting quote
        for piece in part.split(" … "):  # "context … sentence"
            out.extend(piece[a:b].strip() for a, b in split_sentences(piece) if piece[a:b].strip())
    return out


def _step(question: str, state: _State, answers: Sequence[str]) -> bool:
    """Fold one question into the state; True when it was read as a follow-up of the topic."""
    reading = _read(question)
    has_topic = bool(state.topic)
    follow_up = has_topic and (
        reading.refers_back or reading.elliptical or reading.definite_only or not reading.phrases
    )
    if not follow_up:
        state.topic = list(reading.phrases)
        state.shown = []
        return False
    inherited = state.topic
    if reading.elliptical:
        # "What about Germany?": the new entity takes the place of the topic's entity of its kind.
        kinds = {p.label for p in reading.phrases if p.label != "NP"}
        inherited = [p for p in inherited if p.label not in kinds]
    topic = _unique([*reading.phrases, *inherited[:MAX_TOPIC_PHRASES]])
    if reading.wants_person and not any(p.label == "PERSON" for p in topic):
        topic = _unique([*_nearest(answers, {"PERSON"}), *topic])
    if reading.wants_place and not any(p.label in _PLACE_LABELS for p in topic):
        topic = _unique([*_nearest(answers, _PLACE_LABELS), *topic])
    state.topic = topic
    return True


def _nearest(answers: Sequence[str], labels: Iterable[str]) -> list[_Phrase]:
    """The first entity of one of `labels` in the most recent answer that has one."""
    wanted = set(labels)
    for answer in reversed(answers):
        for phrase in _answer_entities(answer):
            if phrase.label in wanted:
                return [phrase]
    return []


@lru_cache(maxsize=512)
def _answer_entities(answer: str) -> tuple[_Phrase, ...]:
    sentences = quoted_sentences(answer)
    if not sentences:
        return ()
    doc = english()(" ".join(sentences))
    return tuple(_Phrase(e.text, e.label_) for e in doc.ents if e.label_ in TOPIC_LABELS)


@lru_cache(maxsize=1024)
def _read(question: str) -> _Reading:
    """Parse one question (about 5 ms) and read off how it relates to earlier turns."""
    doc = english()(question)
    entities = [e for e in doc.ents if e.label_ in TOPIC_LABELS]
    in_entity = {t.i for e in entities for t in e}
    phrases = [_Phrase(e.text, e.label_) for e in entities]
    definite_only = True
    has_noun = False
    for chunk in doc.noun_chunks:
        root = chunk.root
        if root.pos_ not in ("NOUN", "PROPN") or root.i in in_entity:
            continue
        words = [t for t in chunk if not _function_word(t)]
        if not words:
            continue
        has_noun = True
        definite = any(t.lower_ == "the" or t.morph.get("PronType") == ["Dem"] for t in chunk if t.pos_ == "DET")
        # A noun with a proper noun of its own ("the editor-in-chief of 5Gradar") is specific enough.
        if not definite or any(t.pos_ == "PROPN" for t in root.subtree):
            definite_only = False
        phrases.append(_Phrase(doc[words[0].i : chunk.end].text, "NP"))
    if entities or any(t.pos_ == "PROPN" for t in doc):
        definite_only = False
    alternative = any(t.lower_ in _ALTERNATIVE_WORDS for t in doc)
    refers_back = alternative or any(_refers_back(t) for t in doc) or (len(doc) > 0 and doc[0].pos_ == "CCONJ")
    return _Reading(
        phrases=tuple(_unique(phrases)),
        refers_back=refers_back,
        elliptical=not any(t.pos_ in ("VERB", "AUX") for t in doc),
        definite_only=has_noun and definite_only,
        wants_person=any(t.lower_ in _PERSON_PRONOUNS and t.pos_ == "PRON" for t in doc),
        wants_place=any(t.lower_ == "there" and t.dep_ != "expl" for t in doc),
    )


def _refers_back(t: Any) -> bool:
    """A third-person personal pronoun or a demonstrative (this, that, there, then)."""
    if t.dep_ == "expl":  # "is there a ban?", "it is said that": pleonastic, refers to nothing
        return False
    kind = t.morph.get("PronType")
    if "Prs" in kind and t.morph.get("Person") == ["3"]:
        return True
    # Demonstratives standing alone or as adverbs (this, that, there, then); "this year" is a date.
    return "Dem" in kind and t.pos_ in ("PRON", "ADV", "DET") and t.ent_type_ != "DATE"


def _function_word(t: Any) -> bool:
    return t.is_stop or t.pos_ in ("DET", "PRON", "PUNCT") or t.tag_ in ("WDT", "WP", "WP$", "WRB")


def _unique(phrases: Iterable[_Phrase]) -> list[_Phrase]:
    seen: set[str] = set()
    out = []
    for p in phrases:
        if p.text.lower() not in seen:
            seen.add(p.text.lower())
            out.append(p)
    return out
