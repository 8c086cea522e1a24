"""`python -m training.reader` end to end on a few examples: features, training, checkpoint, export, card.

The real SQuAD training data lives beside the checkout (`../shared/data/squad-train/`, as on the
project's machines and in CI); without it the test is skipped with the reason.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rag.answer.reader import SpanReader
from training.reader.data import DATA_DIR

from .conftest import REPO, part_of_squad2_dev, squad2_dev_questions

DATA = DATA_DIR

pytestmark = pytest.mark.skipif(not (DATA / "train-v1.1.json.gz").is_file(), reason=f"no SQuAD training data in {DATA}")


def _train(work: Path, ship: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    eval_set = work.parent / "eval-set"  # squad2-dev's first 12 answerable questions: scoring all 100 is most of a tiny run
    if not eval_set.is_dir():
        part_of_squad2_dev(eval_set, [q for q in squad2_dev_questions() if q.get("gold_docs")][:12])
    return subprocess.run(
        [sys.executable, "-m", "training.reader", "--data", str(DATA), "--eval-set", str(eval_set), "--work", str(work),
         "--ship", str(ship), "--examples", "48", "--held-out", "8", "--eval-every", "2", "--threads", "1", *extra],
        cwd=REPO, capture_output=True, text=True, timeout=600)


def test_training_runs_end_to_end_and_ships_a_reader_qabot_can_load(tmp_path: Path) -> None:
    work, ship = tmp_path / "work", tmp_path / "ship"
    result = _train(work, ship)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("model.onnx", "tokenizer.json", "reader.json", "metrics.json", "curve.jsonl", "MODEL_CARD.md"):
        assert (ship / name).is_file(), name
    metrics = json.loads((ship / "metrics.json").read_text())
    assert metrics["train_examples"] == 48 and metrics["example_kinds"]["impossible"] == 4  # a tenth of a small run
    scored = metrics["onnx_int8"]["squad2_dev_gold_paragraph"]
    assert scored["questions"] == 12 and 0 <= scored["f1"] <= 1
    seen = [p["examples_seen"] for p in map(json.loads, (ship / "curve.jsonl").read_text().splitlines())]
    assert seen and seen == sorted(seen)
    card = (ship / "MODEL_CARD.md").read_text()
    assert "CC BY-SA 4.0" in card and "--examples 48" in card
    # the shipped folder is what qabot runs (QABOT_READER_DIR), without torch
    reader = SpanReader(ship)
    assert reader.check() is None
    assert len(reader.read("Who designed the lamp?", ["The lamp was designed by Ingrid Solberg."])) == 1

    # a finished checkpoint is never trained over by accident: --resume continues it, else a clear refusal
    again = _train(work, tmp_path / "ship2")
    assert again.returncode != 0 and "pass --resume" in again.stderr and "Traceback" not in again.stderr
    resumed = _train(work, tmp_path / "ship3", "--resume")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert re.search(r"resumed at step (\d+) of \1\b", resumed.stderr), resumed.stderr[-2000:]

    # a change to the decoding is re-measured without training: the same model, its reader.json and card rewritten
    model = (ship / "model.onnx").read_bytes()
    (ship / "reader.json").write_text(json.dumps({**json.loads((ship / "reader.json").read_text()), "cover": 0.77}))
    calibrated = _train(work, ship, "--calibrate-only")
    assert calibrated.returncode == 0, calibrated.stderr[-2000:]
    assert (ship / "model.onnx").read_bytes() == model
    config = json.loads((ship / "reader.json").read_text())
    table = json.loads((ship / "metrics.json").read_text())["cover_table"]
    assert config["cover"] in {row["cover"] for row in table} and config["cover"] != 0.77
    assert f"`cover` = {config['cover']}" in (ship / "MODEL_CARD.md").read_text()
