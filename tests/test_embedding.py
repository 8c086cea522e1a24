"""The embedding runtime: ONNX matches sentence-transformers, the int8 copy is made once and checked,
broken cache files heal, and answering a question never imports torch."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.embed import Embedder, default_cache_dir
from rag.onnx_embed import OnnxRecipe
from rag.text import split_sentences

from .conftest import CORPUS, REPO


def corpus_sentences(limit: int = 120) -> list[str]:
    out: list[str] = []
    for path in sorted(CORPUS.iterdir()):
        text = path.read_text(encoding="utf-8")
        out += [text[s:e] for s, e in split_sentences(text) if len(text[s:e].split()) >= 3]
    return out[:limit]


def cosines(a: list[list[float]], b: list[list[float]]) -> np.ndarray:
    return np.sum(np.asarray(a) * np.asarray(b), axis=1)


@pytest.fixture
def cache_with_export(tmp_path: Path, embedder: Embedder) -> Path:
    """A private cache folder holding only the float32 export (made once per machine by the session model)."""
    assert embedder.backend == "onnx"
    recipe = OnnxRecipe.read(embedder.model.model_id, embedder.model.path)
    assert recipe is not None
    cache = tmp_path / "cache"
    dest = recipe.cache_path(cache, "float32")
    dest.parent.mkdir(parents=True)
    shutil.copy(recipe.cache_path(default_cache_dir(), "float32"), dest)
    return cache


def test_onnx_embeddings_equal_sentence_transformers(embedder: Embedder) -> None:
    torch_embedder = Embedder(embedder.model, backend="torch")
    texts = corpus_sentences(60) + [CORPUS.joinpath(sorted(p.name for p in CORPUS.iterdir())[0]).read_text()]
    assert embedder.backend == "onnx" and torch_embedder.backend == "torch"
    assert cosines(embedder.embed_documents(texts), torch_embedder.embed_documents(texts)).min() > 0.9999
    assert np.dot(embedder.embed_query("Who signed the deal?"), torch_embedder.embed_query("Who signed the deal?")) > 0.9999


def test_int8_copy_is_made_once_and_ranks_like_float32(cache_with_export: Path, embedder: Embedder,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    full = Embedder(embedder.model, cache_dir=cache_with_export)
    with caplog.at_level(logging.INFO, logger="rag.onnx_embed"):
        fast = full.with_precision("int8")
        assert fast.runs_precision == "int8"
    assert any("making the int8 ONNX file" in r.getMessage() for r in caplog.records)
    texts = corpus_sentences()
    assert cosines(fast.embed_documents(texts), full.embed_documents(texts)).min() > 0.97
    # Ranking sentences against a question: the best float32 sentence is the int8 one's too.
    q = np.asarray(full.embed_query("In which city was the US-Poland 5G agreement signed?"))
    best = [int(np.argmax(np.asarray(e.embed_documents(texts)) @ q)) for e in (full, fast)]
    assert best[0] == best[1]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rag.onnx_embed"):
        again = Embedder(embedder.model, cache_dir=cache_with_export, precision="int8")
        assert again.runs_precision == "int8"
    assert not any("making" in r.getMessage() for r in caplog.records)  # cached: made once


def test_corrupt_cache_file_is_made_again(cache_with_export: Path, embedder: Embedder) -> None:
    Embedder(embedder.model, cache_dir=cache_with_export, precision="int8").embed_query("warm")
    recipe = OnnxRecipe.read(embedder.model.model_id, embedder.model.path)
    assert recipe is not None
    int8_file = recipe.cache_path(cache_with_export, "int8")
    int8_file.write_bytes(int8_file.read_bytes()[:5000])  # a copy cut short (disk full, killed copy)
    fresh = Embedder(embedder.model, cache_dir=cache_with_export, precision="int8")
    assert fresh.runs_precision == "int8"
    assert int8_file.stat().st_size > 1_000_000
    assert np.dot(fresh.embed_query("Huawei"), embedder.embed_query("Huawei")) > 0.97


def test_failed_int8_copy_falls_back_to_float32_with_a_warning(cache_with_export: Path, embedder: Embedder,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    recipe = OnnxRecipe.read(embedder.model.model_id, embedder.model.path)
    assert recipe is not None
    marker = recipe.cache_path(cache_with_export, "int8").with_suffix(".failed")
    marker.write_text("int8 ONNX model failed: RuntimeError: cosine 0.5\n")  # what an earlier failure leaves
    full = Embedder(embedder.model, cache_dir=cache_with_export)
    fast = full.with_precision("int8")
    with caplog.at_level(logging.WARNING):
        assert fast.runs_precision == "float32"
    assert any("ranking sentences in float32" in r.getMessage() and "delete" in r.getMessage() for r in caplog.records)
    assert fast._impl is full._impl  # the very same model, not a second copy in memory


def test_answering_never_imports_torch(built_data_dir: Path, embedder: Embedder) -> None:
    """A cold `ask` must not pay ~5 s for torch: the ONNX files are already cached here."""
    embedder.with_precision("int8").embed_query("make sure both ONNX files exist")
    code = (
        "import sys\n"
        "from rag.pipeline import QAPipeline\n"
        "from rag.settings import load_settings\n"
        f"s = load_settings(environ={{}}, corpus_dir={str(CORPUS)!r}, data_dir={str(built_data_dir)!r})\n"
        "a = QAPipeline.from_settings(s, sync=False).ask('Who signed the 5G deal in Warsaw?')\n"
        "print(bool(a.sources), 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1",
                              **{k: v for k, v in os.environ.items() if k == "XDG_CACHE_HOME"}})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]


def test_float32_and_int8_sentence_ranking_answer_alike(built_data_dir: Path, embedder: Embedder) -> None:
    from rag.evaluate import evaluate, read_questions

    from .conftest import DEV_QUESTIONS, MORE_QUESTIONS, open_pipeline

    questions = read_questions(DEV_QUESTIONS) + read_questions(MORE_QUESTIONS)
    reports = {}
    for precision in ("float32", "int8"):
        pipeline = open_pipeline(CORPUS, built_data_dir, embedder, sentence_precision=precision)
        assert pipeline.extractive.sentences.embedder.runs_precision == precision
        reports[precision] = evaluate(pipeline, questions)
    for report in reports.values():
        assert report.answer_correctness == 1.0 and report.refusal_rate == 1.0 and report.false_refusals == 0


def test_preload_opens_only_cached_models_and_answers_alike(tmp_path: Path, cache_with_export: Path,
                                                            embedder: Embedder) -> None:
    """`qabot ask` opens the models in the background; it never makes a file there, and the model it opens is
    the one the answerer then uses."""
    empty = Embedder(embedder.model, cache_dir=tmp_path / "empty")
    thread = empty.preload("int8")
    assert thread is not None
    thread.join(timeout=60)
    assert not (tmp_path / "empty").exists() and "_impl" not in empty.__dict__  # no export off the main path

    full = Embedder(embedder.model, cache_dir=cache_with_export)
    thread = full.preload("int8")
    assert thread is not None
    thread.join(timeout=60)
    recipe = OnnxRecipe.read(embedder.model.model_id, embedder.model.path)
    assert recipe is not None
    assert "_impl" in full.__dict__ and not recipe.cache_path(cache_with_export, "int8").exists()  # no quantizing either

    fast = full.with_precision("int8")
    assert fast is full.with_precision("int8")  # what the pipeline asks for is what was preloaded
    fast.embed_query("make the int8 copy")
    again = Embedder(embedder.model, cache_dir=cache_with_export)
    again.preload("int8").join(timeout=60)
    assert "_impl" in again.with_precision("int8").__dict__
    text = "Who signed the 5G deal in Warsaw?"
    assert again.embed_query(text) == embedder.embed_query(text)
    assert again.with_precision("int8").embed_query(text) == fast.embed_query(text)


def test_int8_ranking_runs_batches_at_once_with_the_same_vectors(embedder: Embedder) -> None:
    """Ranking runs its onnxruntime calls on two threads where it can; each call gets the vectors it gets alone.

    int8 activations are quantized per call, so a sentence's vector depends on the batch it is in:
    running batches at once must keep every batch as it was, to the last bit.
    """
    from rag.parallel_calls import calls_at_once

    sentences = [s for path in sorted(CORPUS.glob("*.txt"))
                 for s in (path.read_text(encoding="utf-8")[a:b] for a, b in split_sentences(path.read_text(encoding="utf-8")))
                 if s.strip()][:120]
    impl = embedder.with_precision("int8")._impl
    assert impl.parallel_calls == calls_at_once(1) == min(2, len(os.sched_getaffinity(0)))
    assert calls_at_once(0) == calls_at_once(4) == 1  # the user gave each call its threads
    try:
        impl.run_in_parallel(2)
        at_once = impl.embed(sentences, query=False)
        impl.run_in_parallel(1)
        one_by_one = impl.embed(sentences, query=False)
    finally:
        impl.run_in_parallel(calls_at_once(embedder.torch_threads))
    assert len({len(t) for t in sentences}) > 10  # several batches
    assert np.array_equal(at_once, one_by_one)
