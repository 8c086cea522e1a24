"""Export a trained reader to ONNX, quantize it to int8, and write the shipped folder."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path
from typing import Any


log = logging.getLogger(__name__)


def export_onnx(model: Any, dest: Path) -> None:
    """The model's start/end logits as an ONNX graph with dynamic batch and length."""
    import torch

    class Logits(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids):  # noqa: ANN001, ANN202
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return out.start_logits, out.end_logits

    ids = torch.tensor([[101, 7592, 2088, 102, 2088, 102], [101, 7592, 102, 2088, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1], [0, 0, 0, 1, 1, 0]], dtype=torch.long)
    names = ["input_ids", "attention_mask", "token_type_ids"]
    axes = {n: {0: "batch", 1: "tokens"} for n in [*names, "start_logits", "end_logits"]}
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Logits().eval(), (ids, mask, types), str(dest), dynamo=False, input_names=names,
                          output_names=["start_logits", "end_logits"], dynamic_axes=axes, opset_version=17)


def quantize(source: Path, dest: Path) -> None:
    """int8 weights (matrix products and the embedding tables), activations quantized per call.

    `reduce_range`: 7-bit weights, so the AVX2 kernels (no VNNI), whose 16-bit intermediate sums
    saturate with full 8-bit weights, compute what the VNNI kernels compute: the same spans and scores
    on every CPU qabot runs on. Per-channel scales keep the int8 copy close to float32.
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.WARNING)  # the quantizer logs a line per tensor
    try:
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True,
                         op_types_to_quantize=["MatMul", "Gather"])
    finally:
        root.setLevel(level)


def onnx_logits(path: Path, threads: int = 2):  # noqa: ANN201
    """A `Logits` function over an ONNX file, run as the shipped reader runs it."""
    import onnxruntime as ort

    from rag.answer.reader import session_logits

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda windows: session_logits(session, windows)


def copy_tokenizer(base: Path, dest: Path) -> None:
    shutil.copyfile(base / "tokenizer.json", dest / "tokenizer.json")
