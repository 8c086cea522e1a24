"""Drive one long-running `qabot ask --json` process (questions on stdin) and time each answer."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .common import QABOT, REPO, percentile


@dataclass
class ServeResult:
    startup_to_first_answer_s: float = 0.0
    answers: list[dict[str, Any]] = field(default_factory=list)  # measured questions only
    wall_ms: list[float] = field(default_factory=list)
    peak_rss_mb: float = 0.0

    def stats(self) -> dict[str, float]:
        retrieve = [a["timings_ms"]["retrieve"] for a in self.answers]
        total = [a["timings_ms"]["total"] for a in self.answers]
        return {
            "retrieve_p50_ms": percentile(retrieve, 50), "retrieve_p95_ms": percentile(retrieve, 95),
            "answer_p50_ms": percentile(total, 50), "answer_p95_ms": percentile(total, 95),
            "wall_p50_ms": percentile(self.wall_ms, 50), "wall_p95_ms": percentile(self.wall_ms, 95),
            "peak_rss_mb": self.peak_rss_mb, "first_answer_s": self.startup_to_first_answer_s,
            "questions": len(self.answers),
        }


def serve(env: dict[str, str], warmup: Sequence[str], questions: Sequence[str], timeout: float = 1800) -> ServeResult:
    """Start `qabot ask --json`, send warm-up questions, then time `questions` one by one.

    `timings_ms` come from qabot itself (validation, retrieval, answer); `wall_ms` adds the
    JSON round trip through the pipe. Peak RSS is that of the qabot process (wait4).
    """
    result = ServeResult()
    with tempfile.TemporaryFile("w+") as errors:
        started = time.perf_counter()
        proc = subprocess.Popen([*QABOT, "ask", "--json"], env=env, cwd=REPO, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=errors, text=True, bufsize=1)
        assert proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout

        def ask(question: str) -> tuple[dict[str, Any], float]:
            sent = time.perf_counter()
            proc.stdin.write(question.replace("\n", " ") + "\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
            if not line or time.monotonic() > deadline:
                errors.seek(0)
                raise RuntimeError(f"qabot ask --json stopped answering: {errors.read()[-2000:]}")
            return json.loads(line), (time.perf_counter() - sent) * 1000

        try:
            for i, q in enumerate(warmup):
                ask(q)
                if i == 0:
                    result.startup_to_first_answer_s = time.perf_counter() - started
            for q in questions:
                answer, wall = ask(q)
                result.answers.append(answer)
                result.wall_ms.append(wall)
            high_water = _peak_rss_mb(proc.pid)  # the answers are done; only exiting is left
            proc.stdin.close()
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            result.peak_rss_mb = high_water or usage.ru_maxrss / 1024
        finally:
            if proc.returncode is None:
                proc.kill()
                proc.wait()
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"qabot ask --json exited {proc.returncode}: {errors.read()[-2000:]}")
    return result


def _peak_rss_mb(pid: int) -> float:
    """The process's own peak RSS (VmHWM), 0.0 where /proc cannot tell.

    wait4's ru_maxrss is not enough here: the child is forked from this process, and Linux counts
    the parent's resident memory at the fork in the child's maximum. After a fast fill in this
    process (~1 GB at 20k chunks) every serving run then read ~1,008 MB instead of its ~490 MB.
    """
    try:
        for line in open(f"/proc/{pid}/status", encoding="ascii"):
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def hit_and_mrr(answers: Sequence[dict[str, Any]], rows: Sequence[dict[str, Any]], k: int = 3) -> tuple[float, float]:
    """Source hit@k and MRR of `qabot ask --json` answers, by the order of their sources.

    The JSON lists the documents qabot quotes, not its whole retrieval ranking; the in-process
    quality benchmark uses the ranking. This is the view a user gets, used at scale.
    """
    hits = rr = n = 0.0
    for answer, row in zip(answers, rows):
        if row.get("unanswerable"):
            continue
        n += 1
        docs = [s["doc_id"] for s in answer["sources"]]
        ranks = [i for i, d in enumerate(docs, start=1) if any(d.startswith(g) for g in row["gold_docs"])]
        hits += bool(ranks and ranks[0] <= k)
        rr += 1 / ranks[0] if ranks else 0.0
    return (hits / n, rr / n) if n else (float("nan"), float("nan"))

