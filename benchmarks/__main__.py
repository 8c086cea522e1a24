"""Run every benchmark and print one table: qabot against the stock LlamaIndex pipeline.

    python -m benchmarks --quick          # < 3 min: no scale runs, no 2,000-doc re-ingest (recorded ones are shown)
    python -m benchmarks                  # everything, including the 20k/100k-chunk scale runs (hours)
    python -m benchmarks --scale-results benchmarks/results/scale.json   # full, reusing a recorded scale run
    python -m benchmarks --only llm       # the LLM part alone: llamacpp with the test model, Discord streaming

Work folders go under $QABOT_BENCH_DIR (default /tmp/qabot-bench) and are removed at the end
unless --keep. Numbers are medians over repeated runs where a run is cheap; machines are noisy,
so compare ratios, and look at the load average printed with the table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from . import synth
from .common import (
    CORPUS, DEV_QUESTIONS, MORE_QUESTIONS, PYTHON, QABOT, REPO, WORK, fmt, fresh_dir, machine, median, percentile,
    plain_env, qabot_env, read_questions, run, run_ingest, table,
)
from .serve import serve

RECORDED_SCALE = Path(__file__).resolve().parent / "results" / "scale.json"
COLD_QUESTION = "In which city was the US-Poland 5G agreement signed?"
WARMUP_QUESTIONS = ("What is 5G?", "Which companies build mobile networks?", "What did the officials announce?")


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _checked(result, what: str):  # noqa: ANN001, ANN202
    if result.returncode not in (0, 1):
        raise RuntimeError(f"{what} failed ({result.returncode}): {result.stderr[-3000:]}")
    return result


# -- pieces -----------------------------------------------------------------------------------------
def qabot_ingest(corpus: Path, data: Path, **env: str) -> dict[str, Any]:
    return run_ingest(qabot_env(corpus, data, **env))


def baseline_build(corpus: Path, data: Path) -> dict[str, Any]:
    res = _checked(run([PYTHON, "-m", "benchmarks.baseline", "build", str(corpus), str(data)], env=plain_env()),
                   "baseline build")
    return {**json.loads(res.stdout.splitlines()[-1]), "wall_s": res.seconds, "peak_rss_mb": res.peak_rss_mb}


def baseline_query(data: Path, questions: str) -> dict[str, Any]:
    res = _checked(run([PYTHON, "-m", "benchmarks.baseline", "query", str(data), "--questions", questions],
                       env=plain_env()), "baseline query")
    return json.loads(res.stdout.splitlines()[-1])


def ranking_quality(rankings: list[list[str]], rows: list[dict[str, Any]], k: int = 3) -> dict[str, float]:
    """Source hit@k and MRR@k over the answerable questions, from each question's ranked doc ids."""
    hits = rr = n = 0
    for ranked, row in zip(rankings, rows):
        if row.get("unanswerable"):
            continue
        n += 1
        docs = list(dict.fromkeys(ranked))[:k]
        ranks = [i for i, d in enumerate(docs, start=1) if any(d.startswith(g) for g in row["gold_docs"])]
        hits += bool(ranks)
        rr += 1 / ranks[0] if ranks else 0
    return {"hit": hits / n, "mrr": rr / n, "n": n}


def qabot_quality(corpus: Path, data: Path, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """In-process: the retrieval ranking behind each answer, plus rag.evaluate's answer checks."""
    from rag.evaluate import EvalQuestion, evaluate
    from rag.index import Index
    from rag.pipeline import QAPipeline
    from rag.settings import load_settings

    settings = load_settings(environ={}, corpus_dir=corpus, data_dir=data)
    pipeline = QAPipeline.from_settings(settings, sync=False, index=Index.from_settings(settings))
    rankings = [list(pipeline.ask(r["question"]).retrieved) for r in rows]
    questions = [EvalQuestion(str(r.get("id", i)), r["question"], tuple(r.get("gold_docs", ())),
                              tuple(r.get("answer_any", ())), bool(r.get("unanswerable"))) for i, r in enumerate(rows)]
    report = evaluate(pipeline, questions, k=3)
    return {**ranking_quality(rankings, rows), "correct": report.answer_correctness, "refused": report.refusal_rate,
            "false_refusals": report.false_refusals}


def cold_starts(qabot_data: Path, base_data: Path, reps: int) -> dict[str, Any]:
    """Alternate the two cold commands so that load on the machine hits both alike."""
    q_times, b_times, q_rss, b_rss = [], [], [], []
    for _ in range(reps):
        q = _checked(run([*QABOT, "ask", "--json", COLD_QUESTION], env=qabot_env(CORPUS, qabot_data)), "qabot ask")
        q_times.append(q.seconds)
        q_rss.append(q.peak_rss_mb)
        b = _checked(run([PYTHON, "-m", "benchmarks.baseline", "query", str(base_data), "--one", COLD_QUESTION],
                         env=plain_env()), "baseline query")
        b_times.append(b.seconds)
        b_rss.append(b.peak_rss_mb)
    return {"qabot_s": median(q_times), "baseline_s": median(b_times), "qabot_runs": q_times, "baseline_runs": b_times,
            "qabot_rss_mb": median(q_rss), "baseline_rss_mb": median(b_rss)}


def reingest_small(work: Path, n_docs: int = 2000) -> dict[str, Any]:
    """--quick: 2,000 one-line articles (one short chunk each), ingested, then re-ingested unchanged.

    What a re-ingest costs depends on the number of files, not their length; short articles
    keep the first, embedding ingest cheap.
    """
    import random

    corpus = fresh_dir(work / "reingest" / "corpus")
    gen = synth.Generator(synth.read_source())
    for i in range(n_docs):
        rng = random.Random(i)
        who, where = gen.invented_word(rng).capitalize(), gen.invented_word(rng).capitalize()
        (corpus / f"{i:05d}.txt").write_text(
            f" date 2019-{i % 12 + 1:02d}-{i % 28 + 1:02d}  {who} opens network in {where}\n\n"
            f"{who} said the network in {where} would open next year.\n", encoding="utf-8")
    data = work / "reingest" / "data"
    first = qabot_ingest(corpus, data)
    again = qabot_ingest(corpus, data)
    return {"first": first, "again": again, "docs": first["documents"], "kind": "one-line articles"}


def throughput(work: Path, n_docs: int, sample: int, threads: int, rounds: int) -> dict[str, Any]:
    """Full `qabot ingest` of a synthetic corpus vs raw SentenceTransformer.encode of its chunk texts.

    The two alternate for `rounds` rounds (medians), so that a busy spell of the machine does
    not land on one side only; CPU-time rates, which load distorts less, are reported too.
    """
    corpus = work / "distractors" / "corpus"
    synth.write_corpus(corpus, n_docs)
    data = work / "distractors" / "data"
    ingests, raws = [], []
    for _ in range(rounds):
        if data.exists():
            shutil.rmtree(data)
        ingests.append(qabot_ingest(corpus, data, QABOT_TORCH_THREADS=str(threads)))
        sizes = ["16", "32", "64"] if sample < 64 else []  # --quick: fewer batch sizes on a smaller sample
        raw_run = _checked(run([PYTHON, "-m", "benchmarks.raw_encode", str(corpus), "--threads", str(threads),
                                "--sample", str(sample), *(["--batch-sizes", *sizes] if sizes else [])],
                               env=plain_env()), "raw encode")
        raws.append(json.loads(raw_run.stdout.splitlines()[-1]))
    chunks = ingests[0]["chunks"]
    return {"ingest": ingests[-1], "raw": raws[-1], "rounds": rounds,
            "qabot_chunks_per_s": median([chunks / i["wall_s"] for i in ingests]),
            "qabot_sync_chunks_per_s": median([chunks / i["sync_s"] for i in ingests]),
            "qabot_chunks_per_cpu_s": median([chunks / i["cpu_s"] for i in ingests]),
            "raw_chunks_per_s": median([r["chunks_per_s"] for r in raws]),
            "raw_chunks_per_cpu_s": median([r["chunks_per_cpu_s"] for r in raws]),
            "corpus": str(corpus), "data": str(data)}


# -- the whole run ----------------------------------------------------------------------------------
def run_llm(qdata: Path) -> dict[str, Any]:
    """The LLM path: the llamacpp answerer with a real model (llm.benchmark_model), and streamed answers in Discord."""
    from .discord_stream import discord_stream_benchmark
    from .llm import benchmark_model, llm_benchmark

    model, threads = benchmark_model()
    log(f"LLM: llamacpp with {model.name} at {', '.join(map(str, threads))} thread(s), every dev question")
    out = {"llm": llm_benchmark(qdata, model, threads)}
    log("Discord: time to the first message of a streamed answer")
    out["discord_stream"] = discord_stream_benchmark(qdata)
    return out


def run_all(args: argparse.Namespace) -> dict[str, Any]:
    work = fresh_dir(args.workdir)
    rows = read_questions(DEV_QUESTIONS, MORE_QUESTIONS)
    questions = f"{DEV_QUESTIONS},{MORE_QUESTIONS}"
    out: dict[str, Any] = {"machine": machine(), "quick": args.quick, "only": args.only}
    started = time.perf_counter()

    log("building both indexes of the real corpus")
    qdata, bdata = work / "real" / "qabot", work / "real" / "baseline"
    out["real_ingest"] = qabot_ingest(CORPUS, qdata)
    if args.only == "llm":
        out.update(run_llm(qdata))
        out["seconds"] = time.perf_counter() - started
        return out
    out["baseline_build"] = baseline_build(CORPUS, bdata)

    log("quality and warm latency on the real corpus")
    out["quality"] = {"qabot": qabot_quality(CORPUS, qdata, rows)}
    base = baseline_query(bdata, questions)
    out["quality"]["baseline"] = ranking_quality(base["ranked"], rows)
    served = serve(qabot_env(CORPUS, qdata), WARMUP_QUESTIONS, [r["question"] for r in rows])
    out["warm"] = {"qabot": served.stats(), "baseline_retrieve_p50_ms": percentile(base["retrieve_ms"], 50),
                   "baseline_retrieve_p95_ms": percentile(base["retrieve_ms"], 95)}

    log("cold starts")
    out["cold"] = cold_starts(qdata, bdata, args.cold_reps)

    log("ingest throughput against raw SentenceTransformer.encode")
    n_docs = 25 if args.quick else 500
    out["throughput"] = throughput(work, n_docs, 32 if args.quick else 128, args.threads, 1 if args.quick else 2)
    log("quality among synthetic distractors")
    dcorpus, ddata = Path(out["throughput"]["corpus"]), Path(out["throughput"]["data"])
    bdist = work / "distractors" / "baseline"
    out["distractors"] = {"docs": n_docs + 5, "baseline_build": baseline_build(dcorpus, bdist),
                          "qabot": qabot_quality(dcorpus, ddata, rows),
                          "baseline": ranking_quality(baseline_query(bdist, questions)["ranked"], rows)}

    if args.quick and not RECORDED_SCALE.exists() and not args.scale_results:
        log("re-ingest of 2,000 unchanged documents")  # else shown from the recorded scale run
        out["reingest"] = reingest_small(work)
    if args.scale_results:
        out["scale"] = json.loads(Path(args.scale_results).read_text())
        out["scale_source"] = f"recorded ({args.scale_results})"
    elif not args.quick:
        from .scale import run_scale

        log("scale runs (hours)")
        out["scale"] = run_scale(args.sizes, work / "scale")
        out["scale_source"] = "this run"
    elif RECORDED_SCALE.exists():
        out["scale"] = json.loads(RECORDED_SCALE.read_text())
        out["scale_source"] = f"recorded ({RECORDED_SCALE.relative_to(REPO)})"
    out.update(run_llm(qdata))
    if "reingest" not in out and out.get("scale", {}).get("reingest"):
        out["reingest"] = {"first": out["scale"]["docs_2000_ingest"], "again": out["scale"]["reingest"],
                           "docs": 2000, "kind": f"synthetic articles, from the scale run, {out['scale_source']}"}
    out["seconds"] = time.perf_counter() - started
    return out


HEADER = ("measure", "qabot", "stock LlamaIndex", "ratio", "target", "met")


def llm_rows(r: dict[str, Any]) -> list[tuple[str, ...]]:
    from . import discord_stream, llm

    return llm.render_rows(r["llm"]) + discord_stream.render_rows(r["discord_stream"])


def render(r: dict[str, Any]) -> str:
    m = r["machine"]
    kind = "--only llm" if r.get("only") else "--quick" if r["quick"] else "full"
    lines = [f"qabot benchmarks — {m['cores']} cores ({m['cpu']}), {m['memory_gb']} GB, load avg {m['load_avg_1m']} "
             f"at the start, Python {m['python']}, {kind} run in {r['seconds']:.0f} s",
             "versions: " + ", ".join(f"{k} {v}" for k, v in m["versions"].items()), ""]
    if r.get("only") == "llm":
        return "\n".join([*lines, table(llm_rows(r), HEADER)])
    q, bq = r["quality"]["qabot"], r["quality"]["baseline"]
    dq, dbq = r["distractors"]["qabot"], r["distractors"]["baseline"]
    c, w, t = r["cold"], r["warm"], r["throughput"]
    ratio = lambda a, b: f"{a / b:.2f}×" if b else "-"  # noqa: E731
    yes = lambda ok: "yes" if ok else "**no**"  # noqa: E731
    rows = [
        ("source hit@3, dev+more questions (real corpus)", f"{q['hit']:.3f}", f"{bq['hit']:.3f}", "", "better", yes(q["hit"] >= bq["hit"])),
        ("MRR@3, dev+more (real corpus)", f"{q['mrr']:.3f}", f"{bq['mrr']:.3f}", "", "better", yes(q["mrr"] >= bq["mrr"])),
        (f"source hit@3 among {r['distractors']['docs']} docs (synthetic distractors)", f"{dq['hit']:.3f}", f"{dbq['hit']:.3f}", "", "better", yes(dq["hit"] >= dbq["hit"])),
        (f"MRR@3 among {r['distractors']['docs']} docs", f"{dq['mrr']:.3f}", f"{dbq['mrr']:.3f}", "", "better", yes(dq["mrr"] >= dbq["mrr"])),
        ("answer correctness / unanswerable refused (qabot)", f"{q['correct']:.2f} / {q['refused']:.2f}", "n/a (no LLM)", "", "", ""),
        (f"cold start, new process, 1 question (median of {len(c['qabot_runs'])}) s", fmt(c["qabot_s"], 2), fmt(c["baseline_s"], 2),
         ratio(c["baseline_s"], c["qabot_s"]) + " faster", "≤ 3 s", yes(c["qabot_s"] <= 3)),
        ("cold start peak RSS MB", fmt(c["qabot_rss_mb"], 0), fmt(c["baseline_rss_mb"], 0), "", "", ""),
        ("warm retrieval p50 / p95 ms", f"{fmt(w['qabot']['retrieve_p50_ms'])} / {fmt(w['qabot']['retrieve_p95_ms'])}",
         f"{fmt(w['baseline_retrieve_p50_ms'])} / {fmt(w['baseline_retrieve_p95_ms'])}",
         ratio(w["baseline_retrieve_p50_ms"], w["qabot"]["retrieve_p50_ms"]) + " (p50)", "", ""),
        ("warm full answer p50 / p95 ms", f"{fmt(w['qabot']['answer_p50_ms'])} / {fmt(w['qabot']['answer_p95_ms'])}",
         "(retrieval only)", "", "", ""),
        (f"ingest chunks/s, whole `qabot ingest` process (its sync alone), {t['ingest']['chunks']} chunks, "
         f"{t['raw']['threads']} thread(s), vs raw encode (best batch {t['raw']['best_batch']}), median of {t['rounds']}",
         f"{fmt(t['qabot_chunks_per_s'])} ({fmt(t['qabot_sync_chunks_per_s'])})", f"{fmt(t['raw_chunks_per_s'])} (raw)",
         f"{t['qabot_chunks_per_s'] / t['raw_chunks_per_s']:.2f} ({t['qabot_sync_chunks_per_s'] / t['raw_chunks_per_s']:.2f})",
         "≥ 0.85", yes(t["qabot_chunks_per_s"] / t["raw_chunks_per_s"] >= 0.85)),
        ("same, per CPU-second (whole ingest process vs encode alone; robust to load)",
         fmt(t["qabot_chunks_per_cpu_s"]), f"{fmt(t['raw_chunks_per_cpu_s'])} (raw)",
         f"{t['qabot_chunks_per_cpu_s'] / t['raw_chunks_per_cpu_s']:.2f}", "", ""),
        ("baseline ingest (stock, same corpus) chunks/s", "", fmt(r["distractors"]["baseline_build"]["chunks"] / r["distractors"]["baseline_build"]["build_s"]),
         "", "", ""),
    ]
    if "reingest" in r:
        ri = r["reingest"]["again"]
        rows.append((f"re-ingest {r['reingest']['docs']:,} unchanged docs ({r['reingest']['kind']}): sync s / process s / embedded",
                     f"{ri['sync_s']:.2f} / {ri['wall_s']:.2f} / {ri['embedded']}", "", "", "≤ 2 s, 0", yes(ri["sync_s"] <= 2 and ri["embedded"] == 0)))
    scale = r.get("scale") or {}
    for key in sorted((k for k in scale if re.fullmatch(r"scale_\d+", k)), key=lambda k: int(k[6:])):
        s, sv = scale[key], scale.get(key + "_serve", {})
        label = f"{s['chunks']:,} chunks ({s['documents']:,} docs)"
        if s.get("fast_fill_tokens"):
            rate = scale.get("scale_20000", {})
            projected = s["chunks"] / (rate["chunks"] / rate["ingest_total_s"]) if rate else float("nan")
            rows.append((f"{label}: index MB; ingest not measured (vectors of the first {s['fast_fill_tokens']} "
                         "wordpieces, see scale.fast_fill), projected s at the 20k rate",
                         f"{s['index_mb']:,.0f}; ~{projected:,.0f}", "", "", "", ""))
        else:
            rows.append((f"{label}: ingest total s / index MB / ingest peak RSS MB",
                         f"{s['ingest_total_s']:,.0f} / {s['index_mb']:,.0f} / {s['peak_rss_mb']:,.0f}", "", "", "", ""))
        if sv:
            rows.append((f"{label}: retrieval p50/p95, full answer p50/p95 ms",
                         f"{fmt(sv['retrieve_p50_ms'])}/{fmt(sv['retrieve_p95_ms'])}, {fmt(sv['answer_p50_ms'])}/{fmt(sv['answer_p95_ms'])}",
                         "", "", "p95 ≤ 150 ms", yes(sv["answer_p95_ms"] <= 150)))
            rows.append((f"{label}: serving peak RSS MB / start to first answer s", f"{sv['peak_rss_mb']:,.0f} / {sv['first_answer_s']:.1f}",
                         "", "", "≤ 1,500 MB", yes(sv["peak_rss_mb"] <= 1500)))
            first = scale.get(key + "_serve_first_open_after_ingest")
            if first:
                rows.append((f"{label}: first start after the ingest (builds the keyword index): peak RSS MB / s to first answer",
                             f"{first['peak_rss_mb']:,.0f} / {first['first_answer_s']:.1f}", "", "", "≤ 1,500 MB",
                             yes(first["peak_rss_mb"] <= 1500)))
    rows += llm_rows(r)
    lines.append(table(rows, HEADER))
    if scale:
        lines.append(f"\nscale rows: {r.get('scale_source', '')}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small corpora, no scale runs (about 9 minutes on 2 cores, most of it the llamacpp part; --only llm runs that alone).")
    parser.add_argument("--scale-results", type=Path, help="Show a recorded scale run instead of running one.")
    parser.add_argument("--sizes", type=int, nargs="+", default=[20_000, 100_000], help="Scale sizes in chunks.")
    parser.add_argument("--cold-reps", type=int, default=None, help="Cold starts per side (default 3 quick, 5 full).")
    parser.add_argument("--threads", type=int, default=1, help="Threads for both ingest and raw encode (default 1, qabot's default).")
    parser.add_argument("--only", choices=["llm"], help="Run one part alone: llm = llamacpp and Discord streaming.")
    parser.add_argument("--workdir", type=Path, default=WORK / "run")
    parser.add_argument("--json", type=Path, help="Also write all numbers to this JSON file.")
    parser.add_argument("--keep", action="store_true", help="Keep the work folder (indexes, corpora).")
    args = parser.parse_args()
    args.cold_reps = args.cold_reps or (3 if args.quick else 5)
    try:
        result = run_all(args)
    finally:
        if not args.keep:
            shutil.rmtree(args.workdir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    print(render(result))


if __name__ == "__main__":
    main()
