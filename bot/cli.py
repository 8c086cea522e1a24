"""The `qabot` command: ingest, ask, chat, eval, discord, feedback, health.

Configuration is read here, at the edge: `.env` is loaded in `main()`, one `Settings` object
is built and passed down. A `QabotError` is printed on one line and turned into an exit code;
nothing else about the pipeline lives in this module.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from rag.errors import QabotError
from rag.settings import Settings, load_settings

EXIT_SKIPPED = 1


def _quiet_libraries(level: str) -> None:
    """Third-party libraries log and warn a lot at INFO; users want qabot's own messages."""
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format="%(levelname)s %(name)s: %(message)s")
    for noisy in ("chromadb", "httpx", "httpcore", "sentence_transformers", "urllib3", "trafilatura", "posthog",
                  "llama_index", "transformers", "huggingface_hub", "discord", "openai", "anthropic", "bm25s"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")


def fail(message: str, code: int = 1) -> None:
    click.echo(f"qabot: error: {message}", err=True)
    sys.exit(code)


def user_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn a QabotError into one line on stderr and its exit code; Ctrl-C into exit 130."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except QabotError as exc:
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


pass_settings = click.make_pass_decorator(Settings)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--corpus", type=click.Path(path_type=Path), help="Corpus folder (QABOT_CORPUS_DIR).")
@click.option("--data", type=click.Path(path_type=Path), help="Data folder for the index (QABOT_DATA_DIR).")
@click.option("--env-file", type=click.Path(path_type=Path), default=None, help="Read settings from this file instead of ./.env.")
@click.version_option(package_name="qabot")
@click.pass_context
def cli(ctx: click.Context, corpus: Path | None, data: Path | None, env_file: Path | None) -> None:
    """Answer questions about a corpus of news articles, quoting the articles."""
    from dotenv import load_dotenv

    if env_file is not None and not env_file.is_file():
        fail(f"--env-file {env_file} does not exist", 2)
    load_dotenv(env_file or Path.cwd() / ".env", override=False)
    try:
        settings = load_settings(corpus_dir=corpus, data_dir=data)
    except QabotError as exc:
        fail(str(exc), exc.exit_code)
    _quiet_libraries(settings.log_level)
    ctx.obj = settings


# ---------------------------------------------------------------------------------------- ingest
@cli.command()
@click.option("--rebuild", is_flag=True, help="Drop the index and embed everything again.")
@click.option("--strict", is_flag=True, help="Fail, changing nothing, if any file cannot be ingested.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@pass_settings
@user_errors
def ingest(settings: Settings, rebuild: bool, strict: bool, as_json: bool) -> None:
    """Index the corpus folder, embedding only new or changed articles.

    Exit code 0 when every file was ingested, 1 when some were skipped (each is listed with
    its reason), 2 for bad settings.
    """
    from rag.index import Index

    from .progress import ingest_progress

    index = Index.from_settings(settings, rebuild=rebuild)
    with ingest_progress(enabled=not as_json) as progress:
        report = index.sync(progress=progress, strict=strict)
    if as_json:
        click.echo(json.dumps(report.to_dict(), ensure_ascii=False))
    else:
        for skipped in report.skipped:
            click.echo(f"skipped {skipped.doc_id}: {skipped.reason}", err=True)
        for doc_id, note in report.notes:
            click.echo(f"note {doc_id}: {note}", err=True)
        click.echo(report.summary())
    if report.skipped:
        sys.exit(EXIT_SKIPPED)


def main() -> None:
    """Console entry point."""
    cli(prog_name="qabot")


if __name__ == "__main__":
    main()
