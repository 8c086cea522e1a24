"""The corpus index as one object: where it lives, what embeds it, and how it is kept in sync."""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any, Literal

from .embed import Embedder, resolve_model
from .errors import DiskFullError, IndexDamagedError
from .ingest import IngestReport, Progress, sync_corpus
from .lock import IndexLockedError, WriterLock
from .settings import Settings
from .store import ChunkStore, open_client, set_aside

log = logging.getLogger(__name__)

#: How an Index uses the embedded index's writer lock (rag/lock.py); no effect with a Chroma server.
#: - "each-write": take it for each write (creating, rebuilding, syncing); fail fast if another process has it.
#: - "hold": take it now and keep it until close() or exit (a long-running bot, whose keyword index
#:   must not go stale under it); fail fast if another process has it.
#: - "if-free": like "each-write", but when another process has it, skip the sync with a warning
#:   and read the index as it is (`qabot ask`/`chat`).
LockPolicy = Literal["each-write", "hold", "if-free"]


class Index:
    """A Chroma collection of chunks plus the embedder it was built with."""

    def __init__(
        self,
        settings: Settings,
        client: Any,
        store: ChunkStore,
        embedder: Embedder,
        *,
        lock: WriterLock | None = None,
        policy: LockPolicy = "each-write",
    ) -> None:
        self.settings = settings
        self.client = client
        self.store = store
        self.embedder = embedder
        self.lock = lock
        self.policy = policy
        self._warned = False

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        rebuild: bool = False,
        embedder: Embedder | None = None,
        lock: LockPolicy = "each-write",
        preload: bool = False,
    ) -> Index:
        """Open the index the settings name (creating it when absent); `rebuild` starts it over.

        `preload` (answering): open the embedding model and its sentence-ranking copy on a
        background thread while the store opens, rather than at the first question.
        """
        embedder = embedder or Embedder(resolve_model(settings.embed_model), settings.embed_batch_size, settings.torch_threads)
        if preload:
            embedder.preload(settings.sentence_precision)
        writer = WriterLock.for_settings(settings)
        if writer is not None and (lock != "if-free" or rebuild):
            writer.acquire()
        try:
            if rebuild:
                client, store = _rebuild(settings, embedder.model_id)
            else:
                client = open_client(settings)
                if writer is None or writer.held or writer.try_acquire():
                    store = ChunkStore.open(client, settings.collection, embedder.model_id)
                else:
                    store = _open_existing(client, settings, embedder.model_id, writer)
        finally:
            if writer is not None and lock != "hold":
                writer.release_all()
        return cls(settings, client, store, embedder, lock=writer, policy=lock)

    def sync(self, *, progress: Progress | None = None, strict: bool = False) -> IngestReport:
        """Embed what changed in the corpus folder since the last sync."""
        if self.lock is None or self.lock.held:
            return self._sync(progress, strict)
        if self.policy == "if-free":
            if not self.lock.try_acquire():
                return self._unsynced(f"another qabot process ({self.lock.owner() or 'unknown'}) is writing the index "
                                      f"in {self.settings.data_dir}")
        else:
            self.lock.acquire()
        try:
            return self._sync(progress, strict)
        except DiskFullError as exc:
            if self.policy != "if-free":
                raise
            return self._unsynced(str(exc).split(";")[0])
        finally:
            self.lock.release()

    def _sync(self, progress: Progress | None, strict: bool) -> IngestReport:
        try:
            return sync_corpus(self.settings, self.store, self.embedder, progress=progress, strict=strict)
        except IndexDamagedError as exc:
            if exc.part != "vectors":
                raise
        # Chroma's vector files are derived data, and the vectors in them are gone (a write that ran out
        # of space rewrote them half-way): the only source left is the corpus. Start the collection over.
        log.warning("the index's vector files could not be read; rebuilding collection %r from %s",
                    self.settings.collection, self.settings.corpus_dir)
        self.store = ChunkStore.recreate(self.client, self.settings.collection, self.embedder.model_id)
        return sync_corpus(self.settings, self.store, self.embedder, progress=progress, strict=strict)

    def close(self) -> None:
        """Give up the writer lock if this index holds it (policy "hold"); reading still works."""
        if self.lock is not None:
            self.lock.release_all()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def _unsynced(self, why: str) -> IngestReport:
        """What a skipped sync reports: the index as it is, nothing changed (said once per process)."""
        if not self._warned:
            self._warned = True
            log.warning("%s; answering from the index as it is, without syncing %s", why, self.settings.corpus_dir)
        markers = self.store.markers()
        return IngestReport(documents=len(markers), chunks=self.store.count())


def _rebuild(settings: Settings, model_id: str) -> tuple[Any, ChunkStore]:
    """An empty collection for `qabot ingest --rebuild`; a damaged embedded index is set aside first."""
    client = None
    try:
        client = open_client(settings)
        return client, ChunkStore.recreate(client, settings.collection, model_id)
    except IndexDamagedError:
        if settings.server_mode:
            raise
    if client is not None:
        client.close()  # chromadb shares one open database per folder within a process
    aside = set_aside(settings)
    log.warning("the damaged index was moved to %s (delete it once you no longer need it); building a new one", aside)
    client = open_client(settings)
    return client, ChunkStore.open(client, settings.collection, model_id)


def _open_existing(client: Any, settings: Settings, model_id: str, writer: WriterLock) -> ChunkStore:
    """Open the collection without creating it: another process holds the writer lock."""
    if ChunkStore._get(client, settings.collection) is None:
        raise IndexLockedError(
            f"there is no index yet and another qabot process ({writer.owner() or 'unknown'}) is writing the "
            f"index in {settings.data_dir}; try again when it is done"
        )
    return ChunkStore.open(client, settings.collection, model_id, create=False)
