"""Ingestion of the real corpus with the real model and real Chroma: metadata, cleaning, increments."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rag.clean import clean_text, is_prose
from rag.errors import IndexMismatchError
from rag.index import Index
from rag.load import load_corpus
from rag.store import open_client

from .conftest import CORPUS, FIXTURES, QABOT, REPO, assert_one_line_error, make_settings, run_qabot

NAVIGATION = ["中文", "MWC19 – Barcelona", "Relive Mobile World Live TV 2019", "Show Daily", "Latest in Security",
              "Sweden bans Huawei and ZTE", "Exit mobile version", "Subscribe to our newsletter", "- Advertisement -",
              "Get Our Newsletter", "Show news feed", "Mobile Mix: Home is where the 5G is", "(Image credit: n/a)",
              "This text available in", "Follow Mobile World Live", "© 2019 GSM Association"]
PROMO_SENTENCES = ["Sign up here to get the latest news", "Get real time updates directly on you device"]


def _index(corpus: Path, data: Path, embedder, **overrides) -> Index:  # noqa: ANN001
    return Index.from_settings(make_settings(corpus, data, **overrides), embedder=embedder)


def _chunks(index: Index) -> dict[str, tuple[str, dict]]:
    return {cid: (text, meta) for cid, text, meta in index.store.iter_chunks()}


def test_five_articles_become_chunks_with_metadata_and_offsets(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    index = _index(CORPUS, built_data_dir, embedder)
    chunks = _chunks(index)
    docs = {meta["doc_id"] for _, meta in chunks.values()}
    assert docs == {p.name for p in CORPUS.glob("*.txt")}
    assert 10 <= len(chunks) <= 40
    by_doc = {m.doc_id: m for m in index.store.markers().values()}
    assert by_doc["000_320184e85fe372d2.txt"].title == "US and Poland sign cooperation agreement on 5G networks"
    assert by_doc["001_d1183fcb53e46cb8.txt"].title == "US presses on with European 5G security campaign"
    assert by_doc["001_d1183fcb53e46cb8.txt"].date == "2019-09-02"
    assert by_doc["003_a42787a46caf38b0.txt"].title.startswith("US campaigns against Huawei")
    cleaned = {
        d.doc_id: clean_text(d.text, d.meta).text for d in load_corpus(CORPUS, 10**7).documents
    }
    for cid, (text, meta) in chunks.items():
        assert cid == f"{meta['doc_id']}#{meta['chunk_index']}"
        for key in ("title", "doc_hash", "start", "end", "date", "url", "source", "author"):
            assert key in meta, (cid, key)
        # offsets point into the cleaned text, which is what quotes are verified against
        assert cleaned[meta["doc_id"]][meta["start"] : meta["end"]] == text
    metas = [m for _, m in chunks.values()]
    assert {m["source"] for m in metas if m["doc_id"].startswith("001")} == {"Mobile World Live"}
    assert {m["source"] for m in metas if m["doc_id"].startswith("003")} == {"Sunrise News"}
    assert {m["author"] for m in metas if m["doc_id"].startswith("004")} == {"Dan Oliver"}


def test_no_chunk_is_navigation_or_promotion(built_data_dir: Path, embedder) -> None:  # noqa: ANN001
    for text, meta in _chunks(_index(CORPUS, built_data_dir, embedder)).values():
        for needle in NAVIGATION + PROMO_SENTENCES:
            assert needle not in text, (meta["doc_id"], needle)
        lines = [ln for ln in text.split("\n") if ln.strip()]
        short = [ln for ln in lines if not is_prose(ln)]
        assert len(short) <= max(2, len(lines) // 3), (meta["doc_id"], short)


def _body_sentences(raw: str) -> list[str]:
    """Every paragraph of the raw file that reads as article prose (independent of the cleaner)."""
    paragraphs = [p.strip() for p in re.split(r"\n\s*\n|\n(?=\S)", raw) if p.strip()]
    return [
        p for p in paragraphs
        if len(p.split()) >= 8 and p.endswith((".", "”", '"', "…", "...")) and not any(s in p for s in PROMO_SENTENCES)
    ]


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.txt")), ids=lambda p: p.name[:3])
def test_every_article_sentence_survives_cleaning(path: Path) -> None:
    raw = path.read_text(encoding="utf-8")
    cleaned = clean_text(raw).text
    sentences = _body_sentences(raw)
    assert len(sentences) >= 5
    lost = [s for s in sentences if s not in cleaned]
    assert not lost, lost
    # short article lines the rule above would miss
    for must in ("Declaration.", "Stuck in the middle with EU", "Chris Donkin", "Dan Oliver"):
        if must in raw and path.name[:3] in ("001", "004"):
            assert must in cleaned or must not in raw


def test_second_sync_embeds_nothing_and_edits_delete_update_only_their_document(corpus_copy: Path, tmp_path: Path, embedder) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    index = _index(corpus_copy, data, embedder)
    first = index.sync()
    assert (first.added, first.updated, first.removed, first.unchanged) == (5, 0, 0, 0)
    assert first.embedded == first.chunks
    before = _chunks(index)

    again = index.sync()
    assert (again.embedded, again.added, again.unchanged) == (0, 0, 5)
    assert _chunks(index) == before

    edited = corpus_copy / "002_1422b7e4d913b162.txt"
    edited.write_text(edited.read_text(encoding="utf-8").replace("more than 30 countries", "more than 40 countries"), encoding="utf-8")
    third = index.sync()
    after = _chunks(index)
    n_002 = sum(1 for _, m in after.values() if m["doc_id"] == edited.name)
    assert (third.updated, third.added, third.unchanged, third.embedded) == (1, 0, 4, n_002)
    for cid, (text, meta) in after.items():
        if meta["doc_id"] != edited.name:
            assert before[cid] == (text, meta)
    assert any("more than 40 countries" in t for t, m in after.values() if m["doc_id"] == edited.name)
    assert not any("more than 30 countries" in t for t, _ in after.values())

    (corpus_copy / "003_a42787a46caf38b0.txt").unlink()
    fourth = index.sync()
    assert (fourth.removed, fourth.documents) == (1, 4)
    assert not [m for _, m in _chunks(index).values() if m["doc_id"].startswith("003")]


def test_index_built_with_another_model_is_refused(tmp_path: Path, corpus_copy: Path, embedder) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    _index(corpus_copy, data, embedder).sync()
    other = tmp_path / "other-minilm"
    shutil.copytree(embedder.model.path, other)
    with pytest.raises(IndexMismatchError, match="--rebuild"):
        Index.from_settings(make_settings(corpus_copy, data, embed_model=str(other)))
    result = run_qabot("ingest", env={"QABOT_CORPUS_DIR": str(corpus_copy), "QABOT_DATA_DIR": str(data),
                                      "QABOT_EMBED_MODEL": str(other)})
    assert_one_line_error(result, 2, "qabot ingest --rebuild", "all-MiniLM-L6-v2")


def _bad_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "bad"
    shutil.copytree(FIXTURES / "bad", corpus)
    shutil.copy(CORPUS / "000_320184e85fe372d2.txt", corpus)
    with open(corpus / "huge.txt", "wb") as fh:  # 20 MB of text, generated rather than committed
        line = b"The regulator published another long list of frequencies for the national auction.\n"
        fh.write(line * (20_000_000 // len(line) + 1))
    (corpus / "dangling.txt").symlink_to(tmp_path / "missing.txt")
    outside = tmp_path / "outside.txt"
    outside.write_text("A secret file outside the corpus folder that must not be indexed by qabot at all.")
    (corpus / "escape.txt").symlink_to(outside)
    os.mkfifo(corpus / "pipe.txt")
    return corpus


def test_bad_input_is_skipped_with_reasons_and_the_rest_is_ingested(tmp_path: Path) -> None:
    corpus = _bad_corpus(tmp_path)
    data = tmp_path / "data"
    result = run_qabot("ingest", "--json", env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)})
    assert result.returncode == 1, result.stderr  # something was skipped
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    reasons = {s["doc_id"]: s["reason"] for s in report["skipped"]}
    assert "empty" in reasons["empty.txt"]
    assert "binary" in reasons["binary.txt"]
    assert "over the 10 MB limit" in reasons["huge.txt"]
    assert "unsupported file type .png" in reasons["photo.png"]
    assert "broken symbolic link" in reasons["dangling.txt"]
    assert "outside the corpus" in reasons["escape.txt"]
    assert "not a regular file" in reasons["pipe.txt"]
    ingested = {"000_320184e85fe372d2.txt", "latin1.txt", "utf16.txt", "utf8bom.txt", "page.html", "notes.md"}
    assert report["documents"] == len(ingested)
    notes = {n["doc_id"]: n["note"] for n in report["notes"]}
    assert "not valid UTF-8" in notes["latin1.txt"]

    settings = make_settings(corpus, data)
    client = open_client(settings)
    col = client.get_collection(settings.collection)
    got = col.get(include=["documents", "metadatas"])
    texts = {m["doc_id"]: t for t, m in zip(got["documents"], got["metadatas"])}
    assert set(texts) == ingested
    assert "Café owners in München" in texts["latin1.txt"]
    assert "Bundesnetzagentur" in texts["utf16.txt"] and "\ufeff" not in texts["utf16.txt"]
    assert texts["utf8bom.txt"].startswith("Operators in Ljubljana")
    html_meta = next(m for m in got["metadatas"] if m["doc_id"] == "page.html")
    assert (html_meta["title"], html_meta["author"], html_meta["date"]) == ("Slovenia delays 5G auction", "Ana Novak", "2020-03-04")
    assert "Haha pwned" not in texts["page.html"] and "tracking" not in texts["page.html"]
    assert "postponed the auction of 5G frequencies" in texts["page.html"]
    assert "Subscribe" not in texts["page.html"]


def test_strict_ingest_changes_nothing_when_a_file_is_bad(tmp_path: Path) -> None:
    corpus = _bad_corpus(tmp_path)
    data = tmp_path / "data"
    result = run_qabot("ingest", "--strict", env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)})
    assert_one_line_error(result, 1, "cannot be ingested", "nothing was changed")
    settings = make_settings(corpus, data)
    assert open_client(settings).get_collection(settings.collection).count() == 0


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file_is_skipped(tmp_path: Path, corpus_copy: Path, embedder) -> None:  # noqa: ANN001
    locked = corpus_copy / "locked.txt"
    locked.write_text("A perfectly good article that nobody may read.")
    locked.chmod(0)
    report = _index(corpus_copy, tmp_path / "data", embedder).sync()
    assert [s.doc_id for s in report.skipped] == ["locked.txt"]
    assert report.documents == 5


def test_killed_ingest_is_completed_by_the_next_run(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    articles = sorted(CORPUS.glob("*.txt"))
    # Enough documents that the kill lands mid-way: ~4 chunks each, so 32 documents make 4 groups of
    # 32 chunks and the kill (at the second group's markers) leaves about half of them to redo.
    n_docs = 32
    for i in range(n_docs):
        src = articles[i % len(articles)]
        (corpus / f"{i:03d}_{src.name}").write_text(f"Copy {i} for the kill test.\n\n" + src.read_text(encoding="utf-8"), encoding="utf-8")
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith("QABOT_")}
    env.update({"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data), "QABOT_LOG_LEVEL": "DEBUG",
                "QABOT_EMBED_BATCH_SIZE": "4", "PYTHONPATH": str(REPO)})
    proc = subprocess.Popen([*QABOT, "ingest"], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    # Documents are written in groups (8 batches of 4 chunks here): every chunk of a group, then
    # the group's markers. Kill when the second group's chunks are in and its markers are not
    # (or are being) written: the worst moment.
    indexed = groups = 0
    deadline = time.monotonic() + 120
    try:
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            if not line:
                break
            indexed += "indexed " in line
            if "writing their markers" in line:
                groups += 1
                if groups == 2:
                    proc.send_signal(signal.SIGKILL)
                    break
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert groups == 2 and indexed >= 1, "the ingest finished or stalled before it could be killed"

    # `health` is not green on the index the kill left behind: it names what is missing.
    health = run_qabot("health", env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)}, timeout=60)
    complete = int(re.search(r"index +(\d+) documents", health.stdout)[1])
    assert 1 <= complete < n_docs, health.stdout
    assert f"warn  sync     {n_docs - complete} of {n_docs} corpus files not indexed; run `qabot ingest`" in health.stdout

    result = run_qabot("ingest", "--json", env={"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["documents"] == n_docs
    assert report["unchanged"] >= indexed  # what was finished before the kill is not embedded again
    assert report["added"] >= 1  # and what was not is redone
    settings = make_settings(corpus, data)
    col = open_client(settings).get_collection(settings.collection)
    got = col.get(include=["metadatas"])
    per_doc: dict[str, list[int]] = {}
    for meta in got["metadatas"]:
        per_doc.setdefault(meta["doc_id"], []).append(meta["chunk_index"])
    for doc_id, indexes in per_doc.items():
        assert sorted(indexes) == list(range(len(indexes))), doc_id  # no duplicates, no gaps
        n_chunks = next(m["n_chunks"] for m in got["metadatas"] if m["doc_id"] == doc_id and m["chunk_index"] == 0)
        assert n_chunks == len(indexes)
    assert col.count() == report["chunks"]


def test_progress_counts_indexed_documents_up_to_the_total(corpus_copy: Path, tmp_path: Path, embedder) -> None:  # noqa: ANN001
    calls: list[tuple[int, int]] = []
    report = _index(corpus_copy, tmp_path / "data", embedder).sync(progress=lambda done, total: calls.append((done, total)))
    assert report.added == 5
    assert calls[0] == (0, 5) and calls[-1] == (5, 5)
    assert [done for done, _ in calls] == sorted(done for done, _ in calls)
