"""The llamacpp answerer with the test model (gemma-3-270m): speed, memory, and what became of its replies.

    python -m benchmarks --only llm        # this part of the benchmark run alone

Each thread count runs in its own process (`python -m benchmarks.llm run`), so that its peak RSS
is its own. Per dev question, with qabot's default settings: time to first token (from `ask()`, so
retrieval is included), llama.cpp's own prompt and generation rates (counted from the streamed
tokens when a generation was stopped at the timeout), answer latency, and whether the model's
reply was used or the offline answer given instead, with the notice's reason.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from .common import CORPUS, DEV_QUESTIONS, PYTHON, median, percentile, plain_env, read_questions, run

REASON = re.compile(r"did not give a usable answer \((.*)\); this is the offline answer")


def measure(data: Path, model: Path, threads: int, questions: list[str]) -> dict[str, Any]:
    """In this process: load the model, then answer every question as `qabot ask` would."""
    from rag.index import Index
    from rag.pipeline import QAPipeline
    from rag.settings import load_settings

    settings = load_settings(environ={}, corpus_dir=CORPUS, data_dir=data, answerer="llamacpp", llm_model=str(model),
                             llm_threads=threads)
    started = time.perf_counter()
    pipeline = QAPipeline.from_settings(settings, sync=False, index=Index.from_settings(settings))
    load_s = time.perf_counter() - started
    client = pipeline.llm.client
    rows = []
    for question in questions:
        stamps: list[float] = []  # one per streamed delta (llama.cpp streams one token per delta)
        client.last_timings = {}
        t0 = time.perf_counter()
        answer = pipeline.ask(question, on_token=lambda _d: stamps.append(time.perf_counter()))
        total = time.perf_counter() - t0
        timings = dict(client.last_timings)  # none when the generation was stopped at the timeout
        if not timings and len(stamps) > 1:
            timings = {"predicted_n": len(stamps), "predicted_per_second": (len(stamps) - 1) / (stamps[-1] - stamps[0])}
        reason = REASON.search(answer.notice)
        rows.append({
            "question": question, "total_ms": total * 1000, "answer_ms": answer.timings_ms["answer"],
            "ttft_ms": (stamps[0] - t0) * 1000 if stamps else None,
            "prompt_tokens": timings.get("prompt_n"), "prompt_tokens_per_s": timings.get("prompt_per_second"),
            "cached_tokens": timings.get("cache_n"), "generated_tokens": timings.get("predicted_n"),
            "tokens_per_s": timings.get("predicted_per_second"),
            # Refused: off-corpus (before any LLM call) or the model said it does not know; not a used reply.
            "used": answer.backend == client.name and not answer.refused, "refused": answer.refused,
            "reason": reason.group(1) if reason else ("" if answer.backend == client.name else answer.notice),
        })
    return {"threads": threads, "load_s": load_s, "rows": rows}


def llm_benchmark(data: Path, model: Path, threads: tuple[int, ...] = (1, 2)) -> dict[str, Any]:
    """One process per thread count; medians and percentiles over the dev questions."""
    questions = [r["question"] for r in read_questions(DEV_QUESTIONS)]
    out: dict[str, Any] = {"model": model.name, "questions": len(questions), "runs": {}}
    for n in threads:
        res = run([PYTHON, "-m", "benchmarks.llm", "run", str(data), str(model), "--threads", str(n)], env=plain_env())
        if res.returncode != 0:
            raise RuntimeError(f"llm benchmark ({n} threads) failed: {res.stderr[-3000:]}")
        result = json.loads(res.stdout.splitlines()[-1])
        rows = result["rows"]
        values = lambda key: [r[key] for r in rows if r[key] is not None]  # noqa: E731
        out["runs"][str(n)] = {
            "load_s": result["load_s"], "peak_rss_mb": res.peak_rss_mb,
            "ttft_p50_ms": percentile(values("ttft_ms"), 50), "ttft_p95_ms": percentile(values("ttft_ms"), 95),
            "answer_p50_ms": percentile(values("total_ms"), 50), "answer_p95_ms": percentile(values("total_ms"), 95),
            "tokens_per_s": median(values("tokens_per_s")), "prompt_tokens_per_s": median(values("prompt_tokens_per_s")),
            "prompt_tokens": median(values("prompt_tokens")), "generated_tokens": median(values("generated_tokens")),
            "used": sum(r["used"] for r in rows), "refused": sum(r["refused"] for r in rows),
            "fell_back": dict(Counter(r["reason"] for r in rows if not r["used"] and not r["refused"])), "rows": rows,
        }
    return out


def render_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    """Rows for the benchmark table."""
    rows = []
    for n, s in r["runs"].items():
        label = f"llamacpp {r['model']}, {n} thread(s), {r['questions']} dev questions"
        rows += [
            (f"{label}: first token p50 / p95 ms", f"{s['ttft_p50_ms']:,.0f} / {s['ttft_p95_ms']:,.0f}", "", "", "", ""),
            (f"{label}: answer p50 / p95 ms", f"{s['answer_p50_ms']:,.0f} / {s['answer_p95_ms']:,.0f}", "", "", "", ""),
            (f"{label}: tokens/s generated (prompt tokens/s; median prompt, reply tokens)",
             f"{s['tokens_per_s']:.1f} ({s['prompt_tokens_per_s']:.0f}; {s['prompt_tokens']:.0f}, {s['generated_tokens']:.0f})",
             "", "", "", ""),
            (f"{label}: load s / peak RSS MB", f"{s['load_s']:.1f} / {s['peak_rss_mb']:,.0f}", "", "", "", ""),
            (f"{label}: replies used / fell back (why) / refused",
             f"{s['used']} / {sum(s['fell_back'].values())} (" + "; ".join(f"{k}: {v}" for k, v in s["fell_back"].items())
             + f") / {s['refused']}", "", "", "", ""),
        ]
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.llm")
    sub = parser.add_subparsers(dest="command", required=True)
    one = sub.add_parser("run", help="Measure one thread count in this process; prints one JSON line.")
    one.add_argument("data", type=Path)
    one.add_argument("model", type=Path)
    one.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    questions = [r["question"] for r in read_questions(DEV_QUESTIONS)]
    print(json.dumps(measure(args.data, args.model, args.threads, questions)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
