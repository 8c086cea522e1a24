"""The llamacpp answerer with a real model: speed, memory, and what became of its replies.

    python -m benchmarks --only llm        # this part of the benchmark run alone
    python -m benchmarks.llm record qwen2.5-coder-1.5b-instruct tests/fixtures/llm_replies/qwen2.5-coder-1.5b-instruct.json
    python -m benchmarks.llm record qwen2.5-coder-1.5b-instruct tests/fixtures/llm_replies/hostile/qwen2.5-coder-1.5b-instruct.json --set hostile

The model is Qwen2.5-Coder-1.5B-Instruct when the `qwen` extra is installed (the instruct model the
LLM path is judged with, on 2 threads), else the test extra's gemma-3-270m (a base model, on 1 and 2).
`record` asks the dev and more questions and writes every prompt and raw reply to a fixture that the
suite replays through grounding and attribution (tests/test_llm_replies.py).

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

from .common import CORPUS, DEV_QUESTIONS, MORE_QUESTIONS, PYTHON, median, percentile, plain_env, read_questions, run

REASON = re.compile(r"did not give a usable answer \((.*)\); this is the offline answer")


def measure(data: Path, model: Path, threads: int, questions: list[str], *, sync: bool = False,
            corpus: Path = CORPUS, instructions: str = "", server: str = "") -> dict[str, Any]:
    """In this process: load the model, then answer every question as `qabot ask` would.

    Each row keeps the answer call's prompt (its random fence tag written as "{tag}") and raw reply.
    `server`: the base URL of an OpenAI-compatible server already running the model (`--server`), asked
    with QABOT_ANSWERER=openai and the local default QABOT_LLM_EXCERPTS=sentences, instead of llamacpp.
    """
    from rag.answer.prompts import untagged
    from rag.index import Index
    from rag.pipeline import QAPipeline
    from rag.settings import load_settings

    backend = ({"answerer": "openai", "llm_base_url": server, "llm_model": model.stem, "llm_excerpts": "sentences"}
               if server else {"answerer": "llamacpp", "llm_model": str(model), "llm_threads": threads})
    settings = load_settings(environ={}, corpus_dir=corpus, data_dir=data, llm_instructions=instructions, **backend)
    started = time.perf_counter()
    pipeline = QAPipeline.from_settings(settings, sync=sync, index=Index.from_settings(settings))
    load_s = time.perf_counter() - started
    client = pipeline.llm.client
    exchanges: list[tuple[list[dict[str, str]], str]] = []
    stream = client.stream

    def recording(messages, generation):  # noqa: ANN001, ANN202 - the answer call's prompt and raw reply
        reply = stream(messages, generation)
        exchanges.append((list(messages), reply))
        return reply

    client.stream = recording
    rows = []
    for question in questions:
        stamps: list[float] = []  # one per streamed delta (llama.cpp streams one token per delta)
        client.last_timings = {}
        exchanges.clear()
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
            "llm_use": answer.llm_use, "answer": answer.text,
            "prompt": [{**m, "content": untagged(m["content"])} for m in exchanges[-1][0]] if exchanges else None,
            "reply": exchanges[-1][1] if exchanges else None,
        })
    return {"threads": threads, "load_s": load_s, "rows": rows}


def benchmark_model() -> tuple[Path, tuple[int, ...]]:
    """The instruct model when its extra is installed (2 threads, as users run it), else the test model."""
    from rag.answer.packaged_gguf import QWEN_CODER_1_5B

    if QWEN_CODER_1_5B.installed():
        return QWEN_CODER_1_5B.path(), (2,)
    from tests.real_llm import gemma_gguf

    return gemma_gguf(), (1, 2)


def record(data: Path, model: Path, out: Path, threads: int = 2, which: str = "dev") -> dict[str, Any]:
    """Ask a question set; write the fixture the suite replays (model, file hash, prompts, replies).

    `which`: "dev" (the dev and more questions over the corpus) or "hostile" (tests/hostile.py: questions
    over the corpus plus two hostile articles, and on-topic questions carrying an attack, with a canary
    in the instructions).
    """
    import hashlib

    from rag.settings import load_settings

    corpus, instructions = CORPUS, ""
    if which == "hostile":
        from tests.hostile import INSTRUCTIONS, QUESTIONS, hostile_corpus

        corpus, instructions = hostile_corpus(data / "corpus"), INSTRUCTIONS
        questions = [{"id": f"h{i:02d}", "question": q} for i, q in enumerate(QUESTIONS, 1)]
    else:
        questions = read_questions(DEV_QUESTIONS, MORE_QUESTIONS)
    result = measure(data / "index", model, threads, [q["question"] for q in questions], sync=True, corpus=corpus,
                     instructions=instructions)
    digest = hashlib.sha256()
    with model.open("rb") as fh:
        while block := fh.read(1 << 22):
            digest.update(block)
    settings = load_settings(environ={}, answerer="llamacpp")
    fixture = {
        "model": model.name, "sha256": digest.hexdigest(), "threads": threads, "load_s": result["load_s"], "set": which,
        "settings": {"top_k": settings.top_k, "llm_excerpts": settings.llm_excerpts or "sentences",
                     "llm_max_tokens": settings.llm_max_tokens, "llm_instructions": instructions},
        "replies": [{"id": q["id"], "question": q["question"],
                     "answerable": None if which == "hostile" else not q.get("unanswerable"),
                     **row} for q, row in zip(questions, result["rows"], strict=True)],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(fixture, indent=1, ensure_ascii=False) + "\n")
    return fixture


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
            "llm_use": dict(Counter(r["llm_use"] or ("refused before the model" if r["refused"] else "") for r in rows)),
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
    one.add_argument("--server", action="store_true",
                     help="ask the model through llama.cpp's OpenAI-compatible server (QABOT_ANSWERER=openai) instead of in process")
    rec = sub.add_parser("record", help="Record prompts and raw replies to the dev and more questions as a test fixture.")
    rec.add_argument("model", help="a GGUF file or a packaged model's name (qwen2.5-coder-1.5b-instruct)")
    rec.add_argument("out", type=Path)
    rec.add_argument("--set", dest="which", choices=("dev", "hostile"), default="dev",
                     help="dev: the dev and more questions; hostile: tests/hostile.py's attacks and hostile articles")
    args = parser.parse_args()
    if args.command == "record":
        import tempfile

        from rag.answer.packaged_gguf import resolve

        model = Path(resolve(args.model))
        with tempfile.TemporaryDirectory() as tmp:
            fixture = record(Path(tmp), model, args.out, which=args.which)
        used = Counter(r["llm_use"] or "refused before the model" for r in fixture["replies"])
        print(json.dumps({"out": str(args.out), "model": fixture["model"], "llm_use": used}))
        return
    questions = [r["question"] for r in read_questions(DEV_QUESTIONS)]
    if args.server:
        from tests.real_llm import llama_server

        with llama_server(args.model, threads=args.threads) as url:
            print(json.dumps(measure(args.data, args.model, args.threads, questions, server=url)))
    else:
        print(json.dumps(measure(args.data, args.model, args.threads, questions)))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
