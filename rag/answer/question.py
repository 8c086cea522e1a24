"""What a question asks for: its kind, the type of answer it expects, its key terms.

The article side is analysed by spaCy at ingest (rag/nlp.py). The question side is read here
with a small question grammar over its tokens instead: questions are short and their shape is
regular ("how many", "what <noun>", "who is <name>"), while loading spaCy in every `qabot ask`
would cost more than the rest of a cold start. The answer types are spaCy's own entity labels,
so what a question expects can be matched against what the ingest-time NER found.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..text import stemmer

#: spaCy (OntoNotes) entity labels that answer "who".
PERSON_LIKE = ("PERSON", "ORG", "NORP", "GPE")
NUMERIC = frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"})
TIME_LIKE = frozenset({"DATE", "TIME"})

#: The noun after "what"/"which" names the answer's type. The labels are spaCy's, and the nouns
#: are those of spaCy's own glossary of its labels (`spacy.explain`), plus their common synonyms.
FOCUS_LABELS: dict[str, frozenset[str]] = {
    noun: frozenset(labels)
    for nouns, labels in (
        (("person", "man", "woman", "people", "king", "queen", "emperor", "president", "leader", "author",
          "writer", "founder", "minister", "official", "actor", "player", "ruler", "chancellor"), ("PERSON",)),
        (("nationality", "religion", "ethnicity"), ("NORP",)),
        (("building", "airport", "highway", "bridge", "stadium", "road", "tower"), ("FAC",)),
        (("company", "agency", "institution", "organization", "organisation", "university", "team", "party",
          "firm", "manufacturer", "newspaper", "court", "network", "bank", "group", "school", "club",
          "government", "broadcaster", "channel"), ("ORG",)),
        (("country", "city", "state", "nation", "town", "capital", "province", "county"), ("GPE",)),
        (("river", "mountain", "sea", "ocean", "lake", "island", "region", "continent", "place", "location", "area"),
         ("LOC", "GPE", "FAC")),
        (("battle", "war", "hurricane", "storm", "event", "festival", "tournament"), ("EVENT",)),
        (("book", "song", "film", "movie", "title", "album", "novel", "play"), ("WORK_OF_ART",)),
        (("law", "act", "treaty", "directive", "regulation", "bill"), ("LAW",)),
        (("language",), ("LANGUAGE",)),
        (("year", "date", "day", "month", "century", "decade", "period", "era", "season"), ("DATE",)),
        (("time", "hour"), ("TIME", "DATE")),
        (("percentage", "percent", "share", "proportion", "rate"), ("PERCENT",)),
        (("price", "cost", "fee", "salary", "budget", "sum", "fine"), ("MONEY",)),
        (("number", "population", "amount", "total", "count"), ("CARDINAL", "QUANTITY", "MONEY")),
        (("height", "distance", "length", "weight", "size", "depth", "area", "speed"), ("QUANTITY",)),
    )
    for noun in nouns
}

#: After "how": what the next word asks for.
HOW_LABELS: dict[str, frozenset[str]] = {
    "many": frozenset({"CARDINAL", "QUANTITY", "MONEY", "PERCENT"}),
    "much": frozenset({"MONEY", "QUANTITY", "CARDINAL", "PERCENT"}),
    "long": frozenset({"DATE", "TIME", "QUANTITY", "CARDINAL"}),
    "old": frozenset({"DATE", "CARDINAL"}),
    **{w: frozenset({"QUANTITY", "CARDINAL", "PERCENT", "MONEY"})
       for w in ("far", "tall", "high", "big", "large", "deep", "wide", "heavy", "fast", "often", "expensive")},
}

WH_LABELS: dict[str, frozenset[str]] = {
    "who": frozenset(PERSON_LIKE), "whom": frozenset(PERSON_LIKE), "whose": frozenset(PERSON_LIKE),
    "when": TIME_LIKE, "where": frozenset({"GPE", "LOC", "FAC", "ORG"}),
}

_AUXILIARIES = frozenset(
    "is are was were be been being am do does did has have had can could will would shall should may might must".split()
)
_BE = frozenset("is are was were be been am".split())
_WH = frozenset("who whom whose what which when where why how".split())
#: Words that end the noun phrase after "what"/"which" ("what year did…", "which city in…").
_PHRASE_END = _AUXILIARIES | frozenset(
    "of in on at for by with to from that which who whom whose as about into than after before during".split()
)
#: "Who wrote / authored / penned …" and the nouns that name a piece of journalism.
_WRITING = frozenset({"wrote", "write", "writes", "written", "authored", "penned", "byline"})
_ARTICLE_NOUNS = frozenset({"article", "story", "piece", "report", "column", "post", "op-ed", "editorial", "blog",
                            "feature", "interview", "analysis", "review", "essay", "news"})
_DETERMINERS = frozenset("the a an this that these those its his her their our my your".split())
_NEGATIONS = frozenset("not n't never no none nobody nothing neither nor without".split())
#: Words that make "X or Y" a comparison rather than a choice inside a name.
_COMPARATIVE = re.compile(r"\b(more|less|fewer|most|least|bigger|smaller|larger|higher|lower|cheaper|earlier|later|"
                          r"older|newer|longer|shorter|better|worse|\w+er than|first|last)\b", re.I)
_SUMMARY = re.compile(r"\b(summar(?:y|ise|ize|ising|izing)|sum up|tl;?dr|gist|overview|outline)\b|"
                      r"\bwhat (?:is|'s) (?:the|this|that) (?:article|story|piece|report)\b.*\babout\b", re.I)
_TOKEN = re.compile(r"\w+(?:['’.-]\w+)*|n't|\S")
_OR_SPLIT = re.compile(r",?\s+\bor\b\s+", re.I)


@dataclass(frozen=True)
class Question:
    """The analysed question."""

    text: str
    kind: str  # factoid | define | why | how | yesno | compare | list | summary | byline | other
    wh: str = ""  # the question word, lower-cased ("" for yes/no and commands)
    labels: frozenset[str] = frozenset()  # spaCy entity labels that would answer it
    focus: str = ""  # stem of the noun naming the answer's type ("what river" -> "river")
    negated: bool = False
    key_words: tuple[str, ...] = ()  # names and numbers the answer's evidence must mention
    target: str = ""  # for "who/what is X": X
    sides: tuple[str, ...] = ()  # for comparisons: the things compared


def stem(word: str) -> str:
    """The English Snowball stem the keyword index uses too ("countries" -> "countri")."""
    return stemmer().stemWord(word.lower())


_FOCUS_BY_STEM = {stem(noun): labels for noun, labels in FOCUS_LABELS.items()}


def analyse(text: str) -> Question:
    """Read a question's kind, expected answer type, focus noun and key terms."""
    tokens = tuple(_TOKEN.findall(text))
    lower = [t.lower() for t in tokens]
    words = [t for t in lower if t[0].isalnum() or t == "n't"]
    negated = any(w in _NEGATIONS or w.endswith("n't") for w in words)
    keys = _key_words(tokens)
    common = dict(text=text, negated=negated, key_words=keys)
    if _SUMMARY.search(text):
        return Question(kind="summary", **common)
    wh_at = next((i for i, w in enumerate(lower) if w in _WH), None)
    sides = _comparison_sides(text)
    if sides:
        return Question(kind="compare", wh=lower[wh_at] if wh_at is not None else "", sides=sides, **common)
    if wh_at is None:
        kind = "yesno" if words and words[0] in _AUXILIARIES else "other"
        return Question(kind=kind, **common)
    wh = lower[wh_at]
    after = lower[wh_at + 1 :]
    if wh == "why":
        return Question(kind="why", wh=wh, **common)
    if wh == "how":
        nxt = after[0] if after else ""
        if nxt in HOW_LABELS:
            return Question(kind="factoid", wh=wh, labels=HOW_LABELS[nxt], **common)
        return Question(kind="how", wh=wh, **common)
    if wh in ("who", "whom") and _asks_for_byline(after):
        return Question(kind="byline", wh=wh, labels=frozenset({"PERSON"}), **common)
    if wh in WH_LABELS:
        target = _definition_target(tokens, wh_at)
        if target and wh in ("who", "whom"):
            return Question(kind="define", wh=wh, target=target, **common)
        kind = "list" if wh in ("who", "whom") and after[:1] and after[0] in ("are", "were") else "factoid"
        return Question(kind=kind, wh=wh, labels=WH_LABELS[wh], **common)
    # what / which
    run = _focus_phrase(after)
    if not run:
        target = _definition_target(tokens, wh_at)
        if target:
            return Question(kind="define", wh=wh, target=target, **common)
        return Question(kind="factoid", wh=wh, **common)
    # Without a tagger the head of "which Florida city", "what river separates…" is not known for
    # sure: the first word of the phrase that names a type wins, else the phrase's last word.
    head = next((w for w in run if stem(w) in _FOCUS_BY_STEM), run[-1])
    focus = stem(head)
    labels = _FOCUS_BY_STEM.get(focus, frozenset())
    plural = head.endswith("s") and not head.endswith("ss") and stem(head) != head
    kind = "list" if plural and not (after and after[0] in _BE) else "factoid"
    return Question(kind=kind, wh=wh, labels=labels, focus=focus, **common)


def _asks_for_byline(after: list[str]) -> bool:
    """"Who wrote the article about…?", "who is the author of the story on…?": the article's byline.

    Only writing verbs with an article-like object count: "who wrote the letter to the EU?" asks
    what the article reports, not who wrote the article.
    """
    writes = any(w in _WRITING for w in after) or "author" in after[:3]
    return writes and any(w in _ARTICLE_NOUNS or w.rstrip("s") in _ARTICLE_NOUNS for w in after)


#: The noun phrase after "what"/"which" is read for at most this many words: "which Florida
#: city", "what kind of division"; beyond it the words belong to the rest of the question.
FOCUS_PHRASE_WORDS = 3


def _focus_phrase(after: list[str]) -> list[str]:
    """The words of the phrase after "what"/"which": "what (kind of) river", "which Florida city".

    "what was the name of the storm" -> ["storm"]; "what did…" has none (the answer is open).
    """
    i = 0
    if after[:1] and after[0] in _BE and len(after) > 3 and after[1] in _DETERMINERS and after[2] in (
        "name", "kind", "type", "sort", "form", "title"
    ) and after[3] == "of":
        i = 4  # "what was the name of the storm…"
    elif not after or after[0] in _PHRASE_END:
        return []
    run: list[str] = []
    while i < len(after) and len(run) < FOCUS_PHRASE_WORDS and after[i] not in _PHRASE_END and after[i][0].isalnum():
        if after[i] not in _DETERMINERS:
            run.append(after[i])
        i += 1
    if run and run[-1] in ("kind", "type", "sort", "form", "name") and after[i : i + 1] == ["of"]:
        return _focus_phrase(after[i + 1 :]) or run
    return run


def _definition_target(tokens: tuple[str, ...], wh_at: int) -> str:
    """X in "Who is X?" / "What is X?" / "What does X stand for?"; "" for other questions."""
    lower = [t.lower() for t in tokens]
    if wh_at != 0 or len(lower) < 3 or lower[1] not in _BE:
        return ""
    rest = [t for t in tokens[2:] if t not in "?!."]
    # "Who is the editor of X?" asks for a name, not a definition: only a name is defined.
    if not rest or len(rest) > 8 or rest[0].lower() in _DETERMINERS or any(t.lower() in _AUXILIARIES | _WH for t in rest):
        return ""
    # "Who was drawn to Jacksonville…?" asks who did something: a lower-case phrase is a predicate,
    # not a name ("What is photosynthesis?" is one word and still a definition)
    if len(rest) > 1 and rest[0][0].islower():
        return ""
    return " ".join(rest)


def _key_words(tokens: tuple[str, ...]) -> tuple[str, ...]:
    """Names and numbers in the question: capitalised words past the first, and digits."""
    keys = []
    for i, t in enumerate(tokens):
        if not t[0].isalnum() or t.lower() in _WH or t.lower() in _AUXILIARIES:
            continue
        if any(ch.isdigit() for ch in t) or (i > 0 and t[0].isupper()):
            keys.append(re.sub(r"['’]s$", "", t))
    return tuple(dict.fromkeys(keys))


def _comparison_sides(text: str) -> tuple[str, ...]:
    """("the bridge", "the solar farm") for "Which cost more, the bridge or the solar farm?"."""
    if not _COMPARATIVE.search(text) or not re.search(r"\bor\b", text, re.I):
        return ()
    body = text.rstrip(" ?!.")
    if "," in body:
        body = body.rsplit(",", 1)[1] if re.search(r"\bor\b", body.rsplit(",", 1)[1], re.I) else body
    parts = _OR_SPLIT.split(body)
    if len(parts) != 2:
        return ()
    left = re.split(r"\b(?:than|between|more|less|cheaper|bigger|larger|higher|lower|older|newer)\b", parts[0])[-1]
    sides = tuple(p.strip(" ,:") for p in (left, parts[1]) if p.strip(" ,:"))
    return sides if len(sides) == 2 and all(len(s.split()) <= 8 for s in sides) else ()
