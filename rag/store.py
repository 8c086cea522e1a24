"""The chunk index in Chroma: embedded `PersistentClient` by default, a Chroma server when configured.

qabot talks to chromadb directly rather than through llama-index's `ChromaVectorStore`: that
store keeps a second JSON copy of every chunk in its metadata (most of a 335 MB index at 17k
chunks, measured here) and hides the collection metadata that records the embedding model.
Embeddings are always passed in: Chroma's default embedding function downloads a model.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import logging
import shutil
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .chunk import Chunk
from .errors import DiskFullError, IndexDamagedError, IndexMismatchError, QabotError, SettingsError, StoreUnavailableError
from .lean_imports import override_checks_skipped
from .settings import Settings

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
_PAGE = 2000


@dataclass(frozen=True)
class StoredChunk:
    chunk_id: str
    text: str
    metadata: dict[str, Any]
    score: float = 0.0  # cosine similarity for dense hits


@dataclass(frozen=True)
class DocMarker:
    """What chunk 0 of a document records: the hash it was built from and how many chunks it has."""

    doc_id: str
    doc_hash: str
    n_chunks: int
    title: str
    date: str
    lang: str = "en"  # chunks written before languages were detected were indexed as English


#: chromadb's HttpClient waits forever by default; a Chroma server that is down, stopped or
#: unreachable must give an error in seconds, and no request may hang the bot.
SERVER_CONNECT_TIMEOUT = 5.0
SERVER_REQUEST_TIMEOUT = 30.0  # per request; the largest, an upsert of 2,000 chunks, takes ~1 s


def open_client(settings: Settings):  # -> chromadb.ClientAPI
    """The Chroma client named by the settings: a server when CHROMA_HOST is set, else embedded."""
    # chromadb defines most of its classes on import and the client's on first open (rag/lean_imports.py)
    with override_checks_skipped():
        return _open_client(settings)


def _open_client(settings: Settings):  # -> chromadb.ClientAPI
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # qabot reads .env itself (rag.settings.load_env_file); Chroma's own settings would parse it again.
    chroma_settings = ChromaSettings(anonymized_telemetry=False, _env_file=None)
    if settings.server_mode:
        return _server_client(settings, chroma_settings)
    path = index_folder(settings)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):  # a private name: readers in other processes probe too
            pass
    except OSError as exc:
        if exc.errno in _NO_SPACE:
            raise _disk_full(path) from None
        raise SettingsError(
            f"QABOT_DATA_DIR={settings.data_dir}: cannot write there ({exc.strerror or exc}); choose a writable folder"
        ) from None
    try:
        return chromadb.PersistentClient(path=str(path), settings=chroma_settings)
    except Exception as exc:
        _forget_failed_open(path)
        raise _failure(exc, path, "open") from None


def _forget_failed_open(path: Path) -> None:
    """chromadb caches one System per folder for the process, and keeps one whose opening failed
    half-built: the next open of that folder (after `--rebuild` set it aside) would fail with
    "'RustBindingsAPI' object has no attribute 'bindings'"."""
    from chromadb.api.shared_system_client import SharedSystemClient

    SharedSystemClient._identifier_to_system.pop(str(path), None)
    SharedSystemClient._identifier_to_refcount.pop(str(path), None)


def index_folder(settings: Settings) -> Path:
    """Where the embedded index lives."""
    return settings.data_dir / "chroma"


def set_aside(settings: Settings) -> Path:
    """Move a damaged embedded index out of the way, kept for inspection, and return where it went."""
    path = index_folder(settings)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    dest = path.with_name(f"chroma.damaged-{stamp}")
    n = 1
    while dest.exists():
        dest, n = path.with_name(f"chroma.damaged-{stamp}-{n}"), n + 1
    path.rename(dest)
    return dest


# -- when the embedded index cannot be written or read ------------------------------------------------
#: Room one chunk takes in the embedded index, doubled for safety: 7.9 KB measured here (2,972 chunks:
#: 6.7 KB in chroma.sqlite3 with its full-text index and write-ahead log, 1.2 KB in the HNSW files).
BYTES_PER_CHUNK = 16_000
#: Kept free besides the rows: SQLite's rollback journal and the HNSW files' metadata being rewritten.
RESERVE_BYTES = 2_000_000
#: Chroma applies its write log to the HNSW index up to 1,000 rows at a time (its sync_threshold),
#: also when a read comes first: the room a failed read may have needed.
COMPACTION_ROWS = 1000
_NO_SPACE = (errno.ENOSPC, errno.EDQUOT)
#: What chromadb 1.5's Rust core says when the HNSW files cannot be read: seen after a write that
#: ran out of space left index_metadata.pickle empty or cut off ("Error deserializing pickle file").
_VECTOR_DAMAGE = ("pickle file", "hnsw segment reader", "loading hnsw index")


def room_needed(rows: int) -> int:
    """Bytes a write of `rows` chunks may need on the device holding the index."""
    return RESERVE_BYTES + rows * BYTES_PER_CHUNK


def _disk_full(path: Path, rows: int | None = None) -> DiskFullError:
    """The error for a full device; `rows`: the write that was not started for want of room."""
    free = f"{shutil.disk_usage(path).free / 1e6:.1f} MB free"
    if rows is not None:
        free += f", about {room_needed(rows) / 1e6:.0f} MB needed to write {rows:,} more chunks"
    return DiskFullError(
        f"no space left on the device holding {path.parent} ({free}); free space and run `qabot ingest` again "
        "(what is already indexed is kept)"
    )


def _failure(exc: BaseException, path: Path | None, action: str, rows: int = COMPACTION_ROWS) -> QabotError:
    """The user's view of a Chroma failure on the index at `path` (None: a Chroma server).

    Chroma's messages are generic ("Error in compaction: Failed to apply logs to the metadata
    segment"), so the cause is looked for in what can be checked: the error number or SQLite's
    "disk is full", then damage Chroma names or SQLite finds, then the room left on the device.
    """
    detail = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
    if path is None:
        return StoreUnavailableError(f"the Chroma server failed to {action} ({detail}); check its log and disk")
    causes = [exc, exc.__cause__, exc.__context__]
    if any(getattr(c, "errno", None) in _NO_SPACE for c in causes) or "disk is full" in detail:
        return _disk_full(path)
    found = [detail.lower().find(marker) for marker in _VECTOR_DAMAGE if marker in detail.lower()]
    if found:  # Chroma nests its errors ("A: B: C"): quote from the innermost one that names the damage
        innermost = detail[max(0, detail.lower().rfind("error", 0, min(found))):]
        return IndexDamagedError(
            f"the index's vector files in {path} cannot be read ({innermost}); run `qabot ingest`: "
            "it rebuilds them from the corpus", part="vectors",
        )
    damage = _database_damage(path / "chroma.sqlite3")
    if damage:
        return IndexDamagedError(
            f"the index database {path / 'chroma.sqlite3'} is damaged ({damage}); run `qabot ingest --rebuild`: it sets "
            "the damaged index aside and builds a new one from the corpus", part="database",
        )
    if shutil.disk_usage(path).free < room_needed(rows):
        return _disk_full(path)
    return StoreUnavailableError(f"the index in {path} failed to {action} ({detail}); run `qabot health`")


def _database_damage(db: Path) -> str:
    """SQLite's own verdict on Chroma's database file: "" when it is sound (or absent)."""
    if not db.is_file():
        return ""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            verdict = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        return str(exc)
    return "" if verdict == "ok" else str(verdict)


class _Guarded:
    """A Chroma collection whose failures reach the user as one-line QabotErrors (see `_failure`)."""

    def __init__(self, collection: Any, path: Path | None) -> None:
        self._col = collection
        self._path = path

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._col, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            except QabotError:
                raise
            except _chroma_failures() as exc:
                rows = len(kwargs.get("ids") or ()) if name in ("upsert", "add") else COMPACTION_ROWS
                log.debug("Chroma %s failed", name, exc_info=True)
                raise _failure(exc, self._path, _ACTIONS.get(name, "read"), rows) from None

        return call


_ACTIONS = {"upsert": "write", "add": "write", "delete": "delete", "update": "write"}


def _chroma_failures() -> tuple[type[BaseException], ...]:
    from chromadb.errors import InternalError

    return (InternalError, OSError)


def _server_client(settings: Settings, chroma_settings: Any):  # -> chromadb.ClientAPI
    """`chromadb.HttpClient`, with every request bounded in time and a lost server a StoreUnavailableError."""
    import chromadb
    import httpx

    host = settings.chroma_host
    # chromadb also takes a full URL as the host (then the port is not added)
    base = host.rstrip("/") if host.startswith(("http://", "https://")) else (
        f"{'https' if settings.chroma_ssl else 'http'}://{host}:{settings.chroma_port}"
    )
    where = base.split("://", 1)[1]
    headers = {"Authorization": f"Bearer {settings.chroma_auth_token}"} if settings.chroma_auth_token else None
    # HttpClient() already talks to the server, with no timeout: check it answers first.
    try:
        httpx.get(f"{base}/api/v2/heartbeat", headers=headers, timeout=SERVER_CONNECT_TIMEOUT).raise_for_status()
    except httpx.HTTPStatusError as exc:
        if exc.response.status_code in (401, 403):
            raise StoreUnavailableError(
                f"the Chroma server at {where} refused qabot's credentials; set CHROMA_AUTH_TOKEN to its token"
            ) from None
        raise StoreUnavailableError(
            f"{where} answered HTTP {exc.response.status_code}, not like a Chroma 1.x server; check CHROMA_HOST/CHROMA_PORT"
        ) from None
    except httpx.HTTPError as exc:
        raise StoreUnavailableError(
            f"cannot reach the Chroma server at {where} ({type(exc).__name__}); start it or fix CHROMA_HOST/CHROMA_PORT"
        ) from None
    try:
        client = chromadb.HttpClient(
            host=settings.chroma_host, port=settings.chroma_port, ssl=settings.chroma_ssl, headers=headers,
            settings=chroma_settings,
        )
    except Exception as exc:  # chromadb wraps connection and auth failures in ValueError
        detail = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise StoreUnavailableError(f"cannot use the Chroma server at {where} ({detail})") from None
    # chromadb exposes no timeout setting; its API object's httpx session is where requests go.
    api = client._server
    api._session.timeout = httpx.Timeout(SERVER_REQUEST_TIMEOUT, connect=SERVER_CONNECT_TIMEOUT)
    api._make_request = _translate_transport_errors(api._make_request, where)
    return client


def _translate_transport_errors(make_request: Callable[..., Any], where: str) -> Callable[..., Any]:
    """Wrap chromadb's one HTTP request function: a lost or stuck server becomes StoreUnavailableError."""
    import httpx

    @functools.wraps(make_request)
    def request(*args: Any, **kwargs: Any) -> Any:
        try:
            return make_request(*args, **kwargs)
        except httpx.TimeoutException:
            raise StoreUnavailableError(
                f"the Chroma server at {where} did not answer within {SERVER_REQUEST_TIMEOUT:g} s; "
                "check that it is running and not overloaded"
            ) from None
        except httpx.TransportError as exc:
            raise StoreUnavailableError(
                f"lost the connection to the Chroma server at {where} ({type(exc).__name__}); "
                "start it again or fix CHROMA_HOST/CHROMA_PORT"
            ) from None

    return request


class ChunkStore:
    """One Chroma collection of chunks, tied to the embedding model that built it."""

    def __init__(self, collection: Any, model_id: str, path: Path | None = None) -> None:
        self._col = _Guarded(collection, path)
        self.model_id = model_id
        self.path = path  # the embedded index's folder; None with a Chroma server

    # -- opening --------------------------------------------------------------------------------
    @classmethod
    def open(cls, client: Any, name: str, model_id: str, *, create: bool = True) -> ChunkStore:
        """Open (or create) the collection and refuse one built with another embedding model."""
        path = _local_path(client)
        client = _Guarded(client, path)
        col = cls._get(client, name)
        if col is None:
            if not create:
                raise StoreUnavailableError(f"no index yet (collection {name!r}); run `qabot ingest` first")
            col = client.get_or_create_collection(
                name,
                configuration={"hnsw": {"space": "cosine"}},
                metadata={"embed_model": model_id, "qabot_schema": SCHEMA_VERSION},
                embedding_function=None,
            )
        built_with = (col.metadata or {}).get("embed_model")
        if built_with and built_with != model_id:
            raise IndexMismatchError(
                f"the index {name!r} was built with embedding model {built_with}, but QABOT_EMBED_MODEL is "
                f"{model_id}; run `qabot ingest --rebuild` to rebuild it, or set QABOT_EMBED_MODEL={built_with}"
            )
        return cls(col, model_id, path)

    @staticmethod
    def _get(client: Any, name: str) -> Any | None:
        try:
            return client.get_collection(name, embedding_function=None)
        except Exception as exc:  # NotFoundError in 1.x, ValueError in older clients
            if "does not exist" in str(exc) or type(exc).__name__ in ("NotFoundError", "InvalidCollectionException"):
                return None
            raise

    @classmethod
    def recreate(cls, client: Any, name: str, model_id: str) -> ChunkStore:
        """Drop the collection and start an empty one (`qabot ingest --rebuild`, damaged vector files)."""
        guarded = _Guarded(client, _local_path(client))
        if cls._get(guarded, name) is not None:
            guarded.delete_collection(name)
        return cls.open(client, name, model_id)

    # -- reading --------------------------------------------------------------------------------
    def count(self) -> int:
        return self._col.count()

    @property
    def collection_id(self) -> str:
        """Chroma's id of the collection: a rebuilt index has a new one, even with the same documents."""
        return str(self._col.id)

    def markers(self) -> dict[str, DocMarker]:
        """doc_id -> marker of every completely written document (chunk 0 is written last)."""
        out: dict[str, DocMarker] = {}
        for _, _, meta in self._iter(where={"chunk_index": 0}, documents=False):
            out[meta["doc_id"]] = DocMarker(
                meta["doc_id"], meta.get("doc_hash", ""), int(meta.get("n_chunks", 0)), meta.get("title", ""),
                meta.get("date", ""), meta.get("lang") or "en",
            )
        return out

    def iter_chunks(self) -> Iterator[tuple[str, str, dict[str, Any]]]:
        """Every (id, text, metadata) in the index, page by page (for the keyword index)."""
        yield from self._iter(where=None, documents=True)

    def _iter(self, where: dict | None, documents: bool) -> Iterator[tuple[str, str, dict[str, Any]]]:
        include = ["metadatas", "documents"] if documents else ["metadatas"]
        offset = 0
        while True:
            page = self._col.get(where=where, limit=_PAGE, offset=offset, include=include)
            ids = page["ids"]
            docs = page.get("documents") or [""] * len(ids)
            for cid, text, meta in zip(ids, docs, page["metadatas"] or [{}] * len(ids)):
                yield cid, text or "", dict(meta or {})
            if len(ids) < _PAGE:
                return
            offset += _PAGE

    def get(self, ids: Sequence[str]) -> list[StoredChunk]:
        if not ids:
            return []
        page = self._col.get(ids=list(ids), include=["metadatas", "documents"])
        by_id = {c.chunk_id: c for c in _stored(page["ids"], page["documents"], page["metadatas"])}
        return [by_id[i] for i in ids if i in by_id]

    def get_document(self, doc_id: str) -> list[StoredChunk]:
        """All chunks of one document, in order."""
        page = self._col.get(where={"doc_id": doc_id}, include=["metadatas", "documents"])
        chunks = _stored(page["ids"], page["documents"], page["metadatas"])
        return sorted(chunks, key=lambda c: int(c.metadata.get("chunk_index", 0)))

    def query(self, embedding: Sequence[float], k: int, where: dict | None = None) -> list[StoredChunk]:
        """The k chunks nearest to `embedding` (cosine), optionally filtered by metadata."""
        # Chroma 1.5 returns what it has when k exceeds the collection (no count() round trip first).
        res = self._col.query(
            query_embeddings=[list(embedding)], n_results=k, where=where, include=["metadatas", "documents", "distances"]
        )
        scores = [1.0 - float(d) for d in res["distances"][0]]  # cosine distance -> similarity
        return _stored(res["ids"][0], res["documents"][0], res["metadatas"][0], scores)

    # -- writing --------------------------------------------------------------------------------
    def write_documents(self, documents: Sequence[tuple[Sequence[Chunk], Sequence[Sequence[float]]]]) -> None:
        """Replace the chunks of several documents, crash-safely and in a few round trips.

        Each document's marker (chunk 0) is deleted first and written last, after every other
        chunk of the group: a document whose marker is present with the current hash is complete,
        anything else is redone by the next sync. Stable ids mean a redo overwrites rather than
        duplicates. One call per group instead of per document: Chroma's per-call cost was ~10% of
        an ingest.
        """
        documents = [(chunks, vectors) for chunks, vectors in documents if chunks]
        if not documents:
            return
        self.ensure_room(sum(len(chunks) for chunks, _ in documents))
        self._col.delete(ids=[chunks[0].chunk_id for chunks, _ in documents])
        self._col.delete(where={"doc_id": {"$in": [chunks[0].doc_id for chunks, _ in documents]}})
        bodies: list[tuple[Chunk, Sequence[float], int]] = []
        markers: list[tuple[Chunk, Sequence[float], int]] = []
        for chunks, vectors in documents:
            n = len(chunks)
            markers.append((chunks[0], vectors[0], n))
            bodies.extend((chunks[i], vectors[i], n) for i in range(1, n))
        self._upsert(bodies)
        log.debug("chunks of %d documents written; writing their markers", len(markers))
        self._upsert(markers)

    def ensure_room(self, rows: int) -> None:
        """Stop before a write the device cannot hold: Chroma that runs out of space mid-write can leave
        its vector files unreadable (measured: an empty index_metadata.pickle), costing a full re-embed."""
        if self.path is not None and shutil.disk_usage(self.path).free < room_needed(rows):
            raise _disk_full(self.path, rows)

    def _upsert(self, rows: Sequence[tuple[Chunk, Sequence[float], int]]) -> None:
        """(chunk, vector, chunks in its document) rows, a page at a time."""
        for start in range(0, len(rows), _PAGE):
            page = rows[start : start + _PAGE]
            self._col.upsert(
                ids=[c.chunk_id for c, _, _ in page],
                embeddings=[list(v) for _, v, _ in page],
                documents=[c.text for c, _, _ in page],
                metadatas=[_clean_meta({**c.metadata, "n_chunks": n}) for c, _, n in page],
            )

    def delete_all_except(self, doc_ids: Sequence[str]) -> None:
        """Remove chunks of documents no longer in the corpus, including half-written ones."""
        if doc_ids:
            self._col.delete(where={"doc_id": {"$nin": list(doc_ids)}})
        elif self.count():
            self._col.delete(where={"chunk_index": {"$gte": 0}})


def _local_path(client: Any) -> Path | None:
    """The folder of an embedded (persistent) client's index; None for a Chroma server."""
    chroma_settings = client.get_settings()
    return Path(chroma_settings.persist_directory) if chroma_settings.is_persistent else None


def _stored(ids: Sequence[str], texts: Sequence[Any], metas: Sequence[Any], scores: Sequence[float] | None = None) -> list[StoredChunk]:
    """StoredChunks from the parallel lists Chroma returns (a missing text or metadata is empty)."""
    scores = scores if scores is not None else [0.0] * len(ids)
    return [StoredChunk(cid, text or "", dict(meta or {}), score) for cid, text, meta, score in zip(ids, texts, metas, scores)]


def _clean_meta(meta: dict[str, Any]) -> dict[str, Any]:
    """Chroma metadata values must be str/int/float/bool; empty strings are kept for a fixed schema."""
    return {k: v for k, v in meta.items() if isinstance(v, str | int | float | bool)}
