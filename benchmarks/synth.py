"""A deterministic synthetic news corpus, grown from the real articles, for the scale benchmark.

Each synthetic article mixes sentences of the real corpus, with their names, places and
numbers swapped for invented ones, and filler sentences from a word-level Markov chain over
the real text, sprinkled with invented words that no other article shares. Near-duplicates
would let BM25 and HNSW look cheaper than they are; every article here has its own
vocabulary and its own embedding neighbourhood. The real articles are copied in unchanged,
so the dev questions keep their answers (and their distractors) at every size.

    python -m benchmarks.synth OUT_DIR --docs 5000
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from .common import CORPUS

_SYLLABLES = [c + v for c in "bcdfghklmnprstvz" for v in ("a", "e", "i", "o", "u", "ai", "ou")]
_WORD = re.compile(r"\S+")
_CAPITALISED = re.compile(r"(?<![.!?]\s)(?<!^)\b[A-Z][a-z]{2,}\b")
_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z“\"])")


@dataclass(frozen=True)
class Source:
    """What the generator learned from the real corpus."""

    sentences: tuple[str, ...]
    titles: tuple[str, ...]
    chain: dict[tuple[str, str], tuple[str, ...]]
    starts: tuple[tuple[str, str], ...]


def read_source(corpus: Path = CORPUS) -> Source:
    sentences: list[str] = []
    titles: list[str] = []
    transitions: dict[tuple[str, str], list[str]] = defaultdict(list)
    starts: list[tuple[str, str]] = []
    for path in sorted(corpus.glob("*.txt")):
        text = path.read_text(encoding="utf-8")
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        titles.extend(ln for ln in lines[:8] if 4 <= len(ln.split()) <= 14 and not ln.endswith("."))
        for line in lines:
            if len(line.split()) < 8 or not line.endswith((".", "”", '"')):
                continue  # navigation, headings, captions
            for sentence in _SENTENCE_END.split(line):
                words = sentence.split()
                if len(words) < 6:
                    continue
                sentences.append(sentence)
                starts.append((words[0], words[1]))
                for a, b, c in zip(words, words[1:], words[2:]):
                    transitions[(a, b)].append(c)
    return Source(tuple(sentences), tuple(titles), {k: tuple(v) for k, v in transitions.items()}, tuple(starts))


class Generator:
    """Article number i is the same on every machine and every run (it depends on i and the seed only)."""

    def __init__(self, source: Source, seed: int = 2019) -> None:
        self.source = source
        self.seed = seed

    def invented_word(self, rng: random.Random, syllables: int = 3) -> str:
        return "".join(rng.choice(_SYLLABLES) for _ in range(syllables))

    def article(self, i: int) -> tuple[str, str]:
        """(file name, text) of synthetic article `i`."""
        rng = random.Random(f"{self.seed}:{i}")
        # Each article has its own cast: people, places and organisations nobody else mentions.
        cast = [self.invented_word(rng, rng.choice((2, 3))).capitalize() for _ in range(8)]
        jargon = [self.invented_word(rng, rng.choice((2, 3, 4))) for _ in range(6)]
        year = rng.choice((2018, 2019, 2020))
        date = f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"
        title = self._swap(rng.choice(self.source.titles), rng, cast)
        paragraphs = []
        for _ in range(rng.randint(5, 9)):
            sentences = []
            for _ in range(rng.randint(2, 4)):
                if rng.random() < 0.5:
                    sentences.append(self._swap(rng.choice(self.source.sentences), rng, cast))
                else:
                    sentences.append(self._filler(rng, cast, jargon))
            paragraphs.append(" ".join(sentences))
        text = f" date {date}  {title}\n\n" + "\n\n".join(paragraphs) + "\n"
        return f"synth/{i // 1000:03d}/{i:06d}.txt", text

    def _swap(self, sentence: str, rng: random.Random, cast: list[str]) -> str:
        sentence = _CAPITALISED.sub(lambda m: rng.choice(cast) if rng.random() < 0.7 else m.group(0), sentence)
        return _NUMBER.sub(lambda m: str(rng.randint(2, 999)), sentence)

    def _filler(self, rng: random.Random, cast: list[str], jargon: list[str]) -> str:
        a, b = rng.choice(self.source.starts)
        words = [a, b]
        while len(words) < rng.randint(12, 30):
            nxt = self.source.chain.get((words[-2], words[-1]))
            if not nxt:
                break
            words.append(rng.choice(nxt))
        for _ in range(rng.randint(1, 3)):
            words.insert(rng.randint(1, len(words)), rng.choice(jargon + cast))
        sentence = " ".join(words).rstrip(",;:–-")
        return sentence if sentence.endswith((".", "!", "?")) else sentence + "."


def write_corpus(out: Path, n_docs: int, *, seed: int = 2019, keep_existing: bool = False) -> int:
    """Write `n_docs` synthetic articles (plus the real ones) under `out`; returns the file count.

    With `keep_existing`, articles already there are left alone (they are the same bytes), so a
    corpus grows to a larger size without touching what an index already holds.
    """
    if out.exists() and not keep_existing:
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(CORPUS.glob("*.txt")):
        shutil.copy(path, out / path.name)
    gen = Generator(read_source(), seed)
    for i in range(n_docs):
        name, text = gen.article(i)
        dest = out / name
        if keep_existing and dest.exists():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(text, encoding="utf-8")
    return n_docs + len(list(CORPUS.glob("*.txt")))


def synthetic_questions(n: int, seed: int = 2019) -> list[str]:
    """Questions about synthetic articles (their invented names), spread over the first `n` articles."""
    gen = Generator(read_source(), seed)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        i = rng.randrange(0, 1000)
        _, text = gen.article(i)
        body = text.split("\n\n", 1)[1]
        names = sorted({w for w in _CAPITALISED.findall(body) if w.lower() not in _COMMON}, key=body.index)
        name = names[0] if names else "the agreement"
        out.append(rng.choice(("What did {} say about 5G security?", "Who met {} in Brussels?",
                               "What is {} planning for the network rollout?")).format(name))
    return out


_COMMON = {w.lower() for w in ("The", "This", "That", "Huawei", "China", "United", "States", "European", "Europe")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=2019)
    args = parser.parse_args()
    print(write_corpus(args.out, args.docs, seed=args.seed), "files written to", args.out)


if __name__ == "__main__":
    main()
