"""The corpus index as one object: where it lives, what embeds it, and how it is kept in sync."""

from __future__ import annotations

from typing import Any

from .embed import Embedder, resolve_model
from .ingest import IngestReport, Progress, sync_corpus
from .settings import Settings
from .store import ChunkStore, open_client


class Index:
    """A Chroma collection of chunks plus the embedder it was built with."""

    def __init__(self, settings: Settings, client: Any, store: ChunkStore, embedder: Embedder) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.embedder = embedder

    @classmethod
    def from_settings(cls, settings: Settings, *, rebuild: bool = False, embedder: Embedder | None = None) -> Index:
        """Open the index the settings name (creating it when absent); `rebuild` starts it over."""
        embedder = embedder or Embedder(resolve_model(settings.embed_model), settings.embed_batch_size, settings.torch_threads)
        client = open_client(settings)
        if rebuild:
            store = ChunkStore.recreate(client, settings.collection, embedder.model_id)
        else:
            store = ChunkStore.open(client, settings.collection, embedder.model_id)
        return cls(settings, client, store, embedder)

    def sync(self, *, progress: Progress | None = None, strict: bool = False) -> IngestReport:
        """Embed what changed in the corpus folder since the last sync."""
        return sync_corpus(self.settings, self.store, self.embedder, progress=progress, strict=strict)
