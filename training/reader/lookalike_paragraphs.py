"""The paragraphs `lookalikes.jsonl` was written on: one per training article, drawn with a fixed seed.

`python -m training.reader.lookalike_paragraphs --out DIR` writes them to `DIR/paragraphs-{1..4}.jsonl`
(the four parts the questions were written in), each line the paragraph's id ("Title#index", the index in
SQuAD 1.1 train's article), its text, and two of its real SQuAD questions with their answers, which showed
the writers what the paragraph *does* answer. Kept so that the file's provenance can be checked and more
look-alikes can be written the same way.

Only training articles are drawn: not held out (data.is_held_out) and not among SQuAD 2.0's ten articles,
whose real unanswerable questions are already used.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from .data import DATA_DIR, SQUAD11, SQUAD20, is_held_out, read_squad

#: The draw the shipped file was written on (2026-12-07): 240 articles, a paragraph of 400-1,100
#: characters with at least 3 questions from each, in 4 parts of 60.
SEED = 2026
ARTICLES = 240
PARTS = 4
MIN_CHARS, MAX_CHARS = 400, 1100


def draw(data_dir: Path) -> list[dict]:
    """The paragraphs, in the order they were drawn."""
    v11 = read_squad(data_dir / SQUAD11)
    taken = {a["title"] for a in read_squad(data_dir / SQUAD20)}
    articles = [a for a in v11 if not is_held_out(a["title"]) and a["title"] not in taken]
    rng = random.Random(SEED)
    rng.shuffle(articles)
    rows = []
    for article in articles[:ARTICLES]:
        fitting = [p for p in article["paragraphs"] if MIN_CHARS <= len(p["context"]) <= MAX_CHARS and len(p["qas"]) >= 3]
        if not fitting:
            continue
        para = rng.choice(fitting)
        shown = rng.sample(para["qas"], 2)
        rows.append({"id": f"{article['title']}#{article['paragraphs'].index(para)}",
                     "title": article["title"].replace("_", " "), "paragraph": para["context"],
                     "answerable_examples": [{"question": q["question"], "answer": q["answers"][0]["text"]} for q in shown]})
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m training.reader.lookalike_paragraphs", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, default=DATA_DIR)
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args(argv)
    rows = draw(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    for part in range(PARTS):
        with (args.out / f"paragraphs-{part + 1}.jsonl").open("w", encoding="utf-8") as fh:
            fh.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows[part::PARTS])
    print(f"{len(rows)} paragraphs in {PARTS} parts under {args.out}")


if __name__ == "__main__":
    main()
