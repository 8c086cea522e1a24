"""The keyword index is cached on disk and never served stale: it is named after the documents it holds."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from rag.embed import Embedder
from rag.index import Index

from .conftest import make_settings, open_pipeline


def cache_folders(data: Path) -> list[Path]:
    return sorted((data / "keyword-index" / "qabot").glob("bm25-*"))


def test_second_start_loads_the_cached_keyword_index(corpus_copy: Path, tmp_path: Path, embedder: Embedder) -> None:
    data = tmp_path / "data"
    first = open_pipeline(corpus_copy, data, embedder, sync=True)
    [folder] = cache_folders(data)
    stamp = folder.stat().st_mtime_ns
    second = open_pipeline(corpus_copy, data, embedder, sync=True)
    assert cache_folders(data) == [folder] and folder.stat().st_mtime_ns == stamp  # read, not rebuilt
    question = "Who is the editor-in-chief of 5Gradar?"
    assert second.ask(question).text == first.ask(question).text
    assert second._keyword.retrieve("Kahofer NUKIB", 3)  # BM25 works from the loaded files


def test_a_changed_corpus_never_gets_the_old_keyword_index(corpus_copy: Path, tmp_path: Path, embedder: Embedder) -> None:
    data = tmp_path / "data"
    open_pipeline(corpus_copy, data, embedder, sync=True)
    [old] = cache_folders(data)
    (corpus_copy / "zz_new.txt").write_text(
        "Quokkatel signs a network deal\n\nThe operator Quokkatel said on Friday it had chosen Ericsson for its "
        "5G radio network in Tasmania, ending months of talks.\n", encoding="utf-8")
    reopened = open_pipeline(corpus_copy, data, embedder, sync=True)  # syncs the new article, then opens the keyword index
    [new] = cache_folders(data)
    assert new != old and not old.exists()  # the stale one is gone
    hits = reopened._keyword.retrieve("Quokkatel", 3)
    assert [h.doc_id for h in hits] == ["zz_new.txt"]
    answer = reopened.ask("Which vendor did Quokkatel choose for its 5G radio network?")
    assert "Ericsson" in answer.text and answer.sources[0].doc_id == "zz_new.txt"


def test_a_damaged_cache_is_rebuilt(corpus_copy: Path, tmp_path: Path, embedder: Embedder,
                                    caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    open_pipeline(corpus_copy, data, embedder, sync=True)
    [folder] = cache_folders(data)
    (folder / "chunks.json").write_text("{not json", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="rag.retrieve"):
        pipeline = open_pipeline(corpus_copy, data, embedder, sync=True)
    assert any("rebuilding it" in r.getMessage() for r in caplog.records)
    assert pipeline.ask("In which city was the US-Poland 5G agreement signed?").sources
    assert (folder / "chunks.json").read_text(encoding="utf-8").startswith("{\"ids\"")  # written again


def test_emptied_corpus_reindexes_without_error(corpus_copy: Path, tmp_path: Path, embedder: Embedder) -> None:
    """/reindex after every article was removed: no keyword index to cache, nothing to answer from."""
    data = tmp_path / "data"
    pipeline = open_pipeline(corpus_copy, data, embedder, sync=True)
    for article in corpus_copy.iterdir():
        article.unlink()
    report = pipeline.reindex()
    assert (report.removed, report.documents) == (5, 0)
    assert pipeline.ask("Who signed the 5G deal in Warsaw?").refused


@pytest.mark.parametrize("damage", ["dates.npy", "doc_freq.npy", "chunks.json"])
def test_a_truncated_cache_file_is_rebuilt(corpus_copy: Path, tmp_path: Path, embedder: Embedder, damage: str) -> None:
    data = tmp_path / "data"
    open_pipeline(corpus_copy, data, embedder, sync=True)
    [folder] = cache_folders(data)
    (folder / damage).write_bytes(b"")  # what a power cut after the rename can leave
    pipeline = open_pipeline(corpus_copy, data, embedder, sync=True)
    assert pipeline.ask("In which city was the US-Poland 5G agreement signed?").sources
    assert (folder / damage).stat().st_size > 0


def test_a_rebuilt_index_does_not_reuse_the_old_cache(corpus_copy: Path, tmp_path: Path, embedder: Embedder) -> None:
    data = tmp_path / "data"
    open_pipeline(corpus_copy, data, embedder, sync=True)
    [before] = cache_folders(data)
    settings = make_settings(corpus_copy, data)
    Index.from_settings(settings, rebuild=True, embedder=embedder).sync()  # `qabot ingest --rebuild`
    open_pipeline(corpus_copy, data, embedder, sync=True)
    [after] = cache_folders(data)
    assert after != before
