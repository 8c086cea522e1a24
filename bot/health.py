"""`qabot health`: is this installation able to answer? One line per check, exit 1 when not.

Used as the Docker image's HEALTHCHECK and by hand. It only reads: it never creates the
index, takes the writer lock or loads the embedding model's weights (it does open the 23 MB span
reader, ~0.2 s, since only loading it tells a damaged file), so it is safe and quick next to a
running bot (about a second, plus 2-3 s per 20,000 corpus files to hash them for the sync
check). Added to the command group by `bot/cli.py`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import click

from rag.errors import QabotError
from rag.settings import Settings

from .cli_common import pass_settings, user_errors

log = logging.getLogger(__name__)

Status = Literal["ok", "warn", "fail"]
#: Files a sentence-transformers model folder needs, besides its weights (rag.onnx_embed.WEIGHT_FILES).
MODEL_FILES = ("config.json", "tokenizer.json")


@dataclass(frozen=True)
class Check:
    """The outcome of one check: `fail` makes the installation unhealthy, `warn` does not."""

    name: str
    status: Status
    detail: str


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of one line per check.")
@pass_settings
@user_errors
def health_command(settings: Settings, as_json: bool) -> None:
    """Check settings, embedding model, Chroma and the index; exit 1 if any check fails.

    \b
    qabot health          # one line per check: ok / warn / FAIL
    qabot health --json   # {"ok": true, "checks": [{"name": ..., "status": ..., "detail": ...}]}
    """
    checks = run_checks(settings)
    healthy = all(c.status != "fail" for c in checks)
    if as_json:
        click.echo(json.dumps({"ok": healthy, "checks": [asdict(c) for c in checks]}, ensure_ascii=False))
    else:
        for c in checks:
            click.echo(f"{'FAIL' if c.status == 'fail' else c.status:<4}  {c.name:<8} {c.detail}")
    if not healthy:
        raise SystemExit(1)


@dataclass
class Found:
    """What earlier checks found that later ones use."""

    model_id: str | None = None
    client: Any = None
    store: Any = None  # rag.store.ChunkStore, once the index opened


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a user would fix them; a check that breaks is a FAIL line, never a traceback."""
    found = Found()
    steps: list[tuple[str, Callable[[Settings, Found], Check | None]]] = [
        ("settings", lambda s, _: check_settings(s)), ("corpus", lambda s, _: check_corpus(s)),
        ("model", check_model), ("reader", lambda s, _: check_reader(s)), ("chroma", check_store), ("index", check_index), ("sync", check_sync),
    ]
    if not settings.server_mode:
        steps.append(("writer", lambda s, _: check_lock(s)))
    checks = []
    for name, step in steps:
        try:
            check = step(settings, found)
        except Exception as exc:  # a bug or a failure nobody anticipated: still one line
            log.debug("health check %s failed", name, exc_info=True)
            detail = (str(exc).splitlines() or [""])[0][:300]
            check = Check(name, "fail", f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__)
        if check is not None:
            checks.append(check)
    return checks


def check_settings(settings: Settings) -> Check:
    """Settings were valid to get here; an LLM answerer must also have what it needs (keys)."""
    store = (
        f"Chroma server {settings.chroma_host}:{settings.chroma_port}" if settings.server_mode
        else f"embedded index in {settings.data_dir}"
    )
    answerer = settings.answerer
    if answerer != "extractive":
        from rag.answer.registry import check_llm

        try:
            check_llm(settings)
        except QabotError as exc:
            return Check("settings", "fail", str(exc))
        answerer = f"{answerer} ({settings.llm_model or 'default model'}"
        answerer += f" at {settings.llm_base_url})" if settings.llm_base_url else ")"
    return Check("settings", "ok", f"{store}; answerer {answerer}")


def check_corpus(settings: Settings) -> Check:
    from rag.load import corpus_problem

    folder = settings.corpus_dir
    problem = corpus_problem(folder)
    if problem:
        return Check("corpus", "warn", f"{problem.split(';')[0]}: the index is used as it is")
    files = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return Check("corpus", "ok", f"{files} files in {folder}")


def check_model(settings: Settings, found: Found) -> Check:
    """The embedding model's files are on this machine (nothing will be downloaded)."""
    from rag.embed import resolve_model
    from rag.onnx_embed import WEIGHT_FILES

    try:
        ref = resolve_model(settings.embed_model)
    except QabotError as exc:
        return Check("model", "fail", str(exc))
    folder = Path(ref.path)
    if not folder.is_dir():  # a hub name, allowed to download (HF_HUB_OFFLINE=0)
        found.model_id = ref.model_id
        return Check("model", "warn", f"{ref.model_id} is not installed and will be downloaded at first use")
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        return Check("model", "fail", f"{ref.model_id} in {folder} lacks {', '.join(missing)}; reinstall it")
    found.model_id = ref.model_id
    return Check("model", "ok", f"{ref.model_id} installed in {folder}")


def check_reader(settings: Settings) -> Check:
    """The span reader loads (its ONNX file parses); without it answers quote whole sentences: a warning."""
    from rag.answer.reader import SpanReader

    reader = SpanReader.from_settings(settings)
    problem = reader.check()
    if problem:
        return Check("reader", "warn", f"{problem}; answers quote whole sentences meanwhile")
    return Check("reader", "ok", f"span reader in {reader.folder}")


def check_store(settings: Settings, found: Found) -> Check:
    """Chroma answers (server mode) or the embedded index can be opened."""
    from rag.store import index_folder, open_client

    if not settings.server_mode and not (index_folder(settings) / "chroma.sqlite3").is_file():
        # opening it would create an empty index, and health only reads
        return Check("chroma", "ok", f"embedded, nothing in {index_folder(settings)} yet")
    try:
        found.client = open_client(settings)
    except QabotError as exc:
        return Check("chroma", "fail", str(exc))
    if settings.server_mode:
        return Check("chroma", "ok", f"server at {settings.chroma_host}:{settings.chroma_port} answers")
    return Check("chroma", "ok", f"embedded index in {index_folder(settings)}")


def check_index(settings: Settings, found: Found) -> Check:
    """The collection exists, was built with the configured model, and has chunks."""
    from rag.store import ChunkStore

    if found.client is None:
        if settings.server_mode or (settings.data_dir / "chroma" / "chroma.sqlite3").is_file():
            return Check("index", "fail", "not checked: Chroma is not available")
        return Check("index", "fail", f"no index in {settings.data_dir} yet; run `qabot ingest`")
    if found.model_id is None:
        return Check("index", "fail", "not checked: the embedding model is not available")
    try:
        store = ChunkStore.open(found.client, settings.collection, found.model_id, create=False)
        chunks = store.count()
        documents = len(store.markers()) if chunks else 0
    except QabotError as exc:
        return Check("index", "fail", str(exc))
    if chunks == 0:
        return Check("index", "fail", f"collection {settings.collection!r} is empty; run `qabot ingest`")
    found.store = store
    return Check("index", "ok", f"{documents} documents, {chunks} chunks in {settings.collection!r}, built with {found.model_id}")


def check_sync(settings: Settings, found: Found) -> Check | None:
    """Whether the index holds the corpus as it is now (a killed ingest leaves it behind)."""
    from rag.ingest import index_lag
    from rag.load import corpus_problem

    if found.store is None or corpus_problem(settings.corpus_dir):
        return None  # the index or corpus lines already say why there is nothing to compare
    lag = index_lag(settings, found.store.markers(), found.model_id or "")
    if not lag.behind:
        return Check("sync", "ok", f"the index holds all {lag.files:,} articles of {settings.corpus_dir}")
    parts = [f"{n:,} {what}" for n, what in (
        (lag.new, f"of {lag.files:,} corpus files not indexed"), (lag.changed, "changed since they were indexed"),
        (lag.removed, "indexed but no longer in the corpus"),
    ) if n]
    return Check("sync", "warn", f"{'; '.join(parts)}; run `qabot ingest`")


def check_lock(settings: Settings) -> Check:
    """Who is writing the embedded index (information, never a failure)."""
    from rag.lock import WriterLock

    holder = WriterLock(settings.data_dir).holder()
    return Check("writer", "ok", f"held by {holder}" if holder else "no process is writing the index")
