"""`qabot health`: is this installation able to answer? One line per check, exit 1 when not.

Used as the Docker image's HEALTHCHECK and by hand. It only reads: it never creates the
index, takes the writer lock or loads the model weights, so it is safe and quick (about a
second) next to a running bot. Added to the command group by `bot/cli.py`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import click

from rag.errors import QabotError
from rag.settings import Settings

from .cli_common import pass_settings, user_errors

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


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in the order a user would fix them."""
    checks = [check_settings(settings), check_corpus(settings)]
    model = check_model(settings)
    checks.append(model[0])
    store, client = check_store(settings)
    checks.append(store)
    if client is None and store.status == "ok":
        checks.append(Check("index", "fail", f"no index in {settings.data_dir} yet; run `qabot ingest`"))
    elif client is None:
        checks.append(Check("index", "fail", "not checked: Chroma is not available"))
    elif model[1] is None:
        checks.append(Check("index", "fail", "not checked: the embedding model is not available"))
    else:
        checks.append(check_index(settings, client, model[1]))
    if not settings.server_mode:
        checks.append(check_lock(settings))
    return checks


def check_settings(settings: Settings) -> Check:
    """Settings were valid to get here; an LLM answerer must also have what it needs (keys)."""
    store = (
        f"Chroma server {settings.chroma_host}:{settings.chroma_port}" if settings.server_mode
        else f"embedded index in {settings.data_dir}"
    )
    answerer = settings.answerer
    if answerer != "extractive":
        from rag.answer.registry import make_llm

        try:
            make_llm(settings)
        except QabotError as exc:
            return Check("settings", "fail", str(exc))
        answerer = f"{answerer} ({settings.llm_model or 'default model'}"
        answerer += f" at {settings.llm_base_url})" if settings.llm_base_url else ")"
    return Check("settings", "ok", f"{store}; answerer {answerer}")


def check_corpus(settings: Settings) -> Check:
    folder = settings.corpus_dir
    if not folder.is_dir():
        return Check("corpus", "warn", f"{folder} does not exist: the index is used as it is (QABOT_CORPUS_DIR)")
    files = sum(1 for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))
    return Check("corpus", "ok", f"{files} files in {folder}")


def check_model(settings: Settings) -> tuple[Check, str | None]:
    """The embedding model's files are on this machine (nothing will be downloaded); returns its id."""
    from rag.embed import resolve_model
    from rag.onnx_embed import WEIGHT_FILES

    try:
        ref = resolve_model(settings.embed_model)
    except QabotError as exc:
        return Check("model", "fail", str(exc)), None
    folder = Path(ref.path)
    if not folder.is_dir():  # a hub name, allowed to download (HF_HUB_OFFLINE=0)
        return Check("model", "warn", f"{ref.model_id} is not installed and will be downloaded at first use"), ref.model_id
    missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
    if not any((folder / w).is_file() for w in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        return Check("model", "fail", f"{ref.model_id} in {folder} lacks {', '.join(missing)}; reinstall it"), None
    return Check("model", "ok", f"{ref.model_id} installed in {folder}"), ref.model_id


def check_store(settings: Settings) -> tuple[Check, Any]:
    """Chroma answers (server mode) or the embedded index can be opened; returns the client or None."""
    from rag.store import open_client

    if not settings.server_mode and not (settings.data_dir / "chroma" / "chroma.sqlite3").is_file():
        # opening it would create an empty index, and health only reads
        return Check("chroma", "ok", f"embedded, nothing in {settings.data_dir / 'chroma'} yet"), None
    try:
        client = open_client(settings)
    except QabotError as exc:
        return Check("chroma", "fail", str(exc)), None
    if settings.server_mode:
        return Check("chroma", "ok", f"server at {settings.chroma_host}:{settings.chroma_port} answers"), client
    return Check("chroma", "ok", f"embedded index in {settings.data_dir / 'chroma'}"), client


def check_index(settings: Settings, client: Any, model_id: str) -> Check:
    """The collection exists, was built with the configured model, and has chunks."""
    from rag.store import ChunkStore

    try:
        store = ChunkStore.open(client, settings.collection, model_id, create=False)
        chunks = store.count()
        documents = len(store.markers()) if chunks else 0
    except QabotError as exc:
        return Check("index", "fail", str(exc))
    if chunks == 0:
        return Check("index", "fail", f"collection {settings.collection!r} is empty; run `qabot ingest`")
    return Check("index", "ok", f"{documents} documents, {chunks} chunks in {settings.collection!r}, built with {model_id}")


def check_lock(settings: Settings) -> Check:
    """Who is writing the embedded index (information, never a failure)."""
    from rag.lock import WriterLock

    holder = WriterLock(settings.data_dir).holder()
    return Check("writer", "ok", f"held by {holder}" if holder else "no process is writing the index")
