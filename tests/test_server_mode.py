"""Server mode against a real Chroma server started from the installed chromadb package.

The server listens on 127.0.0.1 only, on a free port, and every test stops it. Every wait is
bounded: the server's heartbeat, each qabot process, and each request (qabot's own timeouts).
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest

from rag import store as store_module
from rag.errors import StoreUnavailableError
from rag.index import Index
from rag.pipeline import QAPipeline
from rag.settings import Settings
from rag.store import ChunkStore, open_client

from .conftest import CORPUS, assert_one_line_error, free_port, popen_qabot, run_qabot
from .fakes.chroma_server import ChromaServer

pytestmark = pytest.mark.timeout(240)

EDITOR_Q = "Who is the editor-in-chief of 5Gradar?"
NUKIB_Q = "Which Czech agency is organising the Prague 5G security meeting?"
NEW_ARTICLE = """Tallinn picks Kalevtel for its harbour 5G network

Tallinn city council chose the operator Kalevtel on Monday to build a standalone 5G network for the
city's harbour, deputy mayor Mart Lepik said after the vote.

The network will connect cranes, ferries and customs gates at the Old City Harbour, and Kalevtel
promised that it would use no equipment from Huawei or ZTE, the council said in a statement.

Construction starts in March and the first cranes will run over the network by the end of the year.
"""
NEW_Q = "Which operator will build the 5G network for Tallinn's harbour?"


def server_store(settings: Settings) -> ChunkStore:
    return ChunkStore.open(open_client(settings), settings.collection, "sentence-transformers/all-MiniLM-L6-v2", create=False)


def assert_consistent(store: ChunkStore, corpus: Path) -> int:
    """Every article of the corpus is in the index with exactly its chunks: no duplicates, no orphans."""
    markers = store.markers()
    assert set(markers) == {p.name for p in corpus.iterdir()}
    ids = [cid for cid, _, _ in store.iter_chunks()]
    expected = {f"{doc_id}#{n}" for doc_id, m in markers.items() for n in range(m.n_chunks)}
    assert len(ids) == len(set(ids)) == store.count()
    assert set(ids) == expected
    return len(ids)


def test_ingest_reingest_and_ask_through_a_server(chroma_server: ChromaServer, corpus_copy: Path, tmp_path: Path) -> None:
    env = chroma_server.qabot_env(corpus_copy, tmp_path / "data")
    first = run_qabot("ingest", "--json", env=env)
    assert first.returncode == 0, first.stderr
    built = json.loads(first.stdout)
    assert (built["documents"], built["added"]) == (5, 5)
    assert not (tmp_path / "data" / "chroma").exists()  # the index is on the server, not in the data folder
    settings = chroma_server.settings(corpus_copy, tmp_path / "data")
    assert server_store(settings).count() == built["chunks"]

    # One article added, one edited, one removed: only those are embedded again.
    (corpus_copy / "900_tallinn.txt").write_text(NEW_ARTICLE, encoding="utf-8")
    edited = corpus_copy / "001_d1183fcb53e46cb8.txt"
    edited.write_text(edited.read_text(encoding="utf-8") + "\n\nThe campaign will continue next year.\n", encoding="utf-8")
    (corpus_copy / "003_a42787a46caf38b0.txt").unlink()
    second = run_qabot("ingest", "--json", env=env)
    assert second.returncode == 0, second.stderr
    report = json.loads(second.stdout)
    assert (report["added"], report["updated"], report["removed"], report["unchanged"]) == (1, 1, 1, 3)
    assert 0 < report["embedded"] < built["embedded"]
    assert assert_consistent(server_store(settings), corpus_copy) == report["chunks"]

    asked = run_qabot("ask", "--json", input=f"{EDITOR_Q}\n{NEW_Q}\n", env=env)
    assert asked.returncode == 0, asked.stderr
    editor, new = (json.loads(line) for line in asked.stdout.splitlines())
    assert "Dan Oliver" in editor["answer"] and not editor["refused"]
    assert "Kalevtel" in new["answer"] and new["sources"][0]["doc_id"] == "900_tallinn.txt"


def _filler_article(i: int) -> str:
    """A made-up article of a few chunks, different for each i."""
    towns = ["Alderbrook", "Bexley Vale", "Corrin", "Dunmere", "Eastwick", "Farrowdale", "Glenhollow", "Harrowgate"]
    town = f"{towns[i % len(towns)]} {i}"
    day = ["Monday", "Tuesday", "Friday"][i % 3]
    paragraphs = [
        (f"The council of {town} approved a fibre and 5G plan worth {i + 3} million on {day}, the mayor of {town} "
         f"told reporters at the town hall after a vote of {i % 7 + 5} to {i % 4}.")
    ]
    for n in range(6):
        paragraphs.append(
            f"Residents of {town} asked in meeting number {n + 1} how the masts would be placed near schools, and the "
            f"operator answered that every site in district {n + i} would be checked by the national regulator before "
            f"construction, with results published within {n + 2} weeks of each inspection."
        )
    return f"{town} council approves 5G plan\n\n" + "\n\n".join(paragraphs) + "\n"


def test_one_process_ingests_while_another_answers(chroma_server: ChromaServer, corpus_copy: Path, tmp_path: Path,
                                                   embedder) -> None:  # noqa: ANN001
    settings = chroma_server.settings(corpus_copy, tmp_path / "data")
    with Index.from_settings(settings, embedder=embedder) as index:
        index.sync()
    for i in range(25):
        (corpus_copy / f"7{i:02d}_town.txt").write_text(_filler_article(i), encoding="utf-8")
    env = chroma_server.qabot_env(corpus_copy, tmp_path / "data")

    started = time.monotonic()
    ingest = popen_qabot("ingest", "--json", env=env)
    ask = popen_qabot("ask", "--json", env=env)
    try:
        asked_out, asked_err = ask.communicate(input=f"{EDITOR_Q}\n{NUKIB_Q}\n" * 3, timeout=180)
        ingest_out, ingest_err = ingest.communicate(timeout=180)
    finally:
        for proc in (ingest, ask):
            proc.kill()
            proc.wait(timeout=30)
    assert ask.returncode == 0, asked_err
    assert ingest.returncode == 0, ingest_err
    assert "Traceback" not in asked_err + ingest_err
    answers = [json.loads(line) for line in asked_out.splitlines()]
    assert len(answers) == 6
    assert all("Dan Oliver" in a["answer"] for a in answers[0::2])
    assert all("NUKIB" in a["answer"] for a in answers[1::2])
    assert json.loads(ingest_out)["added"] + json.loads(ingest_out)["unchanged"] == 30
    # Both processes synced the same 25 new articles at once (`ask` syncs first): stable chunk ids
    # mean a second writer overwrites the first instead of duplicating it, so the index ends up
    # exactly as one sequential sync would leave it.
    store = server_store(settings)
    chunks = assert_consistent(store, corpus_copy)
    with Index.from_settings(settings, embedder=embedder) as index:
        again = index.sync()
    assert (again.added, again.updated, again.removed, again.unchanged) == (0, 0, 0, 30)
    assert store.count() == chunks
    assert time.monotonic() - started < 180


def test_server_down_or_stuck_is_a_one_line_error_exit_3(tmp_path: Path) -> None:
    env = {"CHROMA_HOST": "127.0.0.1", "CHROMA_PORT": str(free_port()), "QABOT_CORPUS_DIR": str(CORPUS),
           "QABOT_DATA_DIR": str(tmp_path / "data")}
    for args in (("ingest",), ("ask", EDITOR_Q)):
        started = time.monotonic()
        result = run_qabot(*args, env=env, timeout=60)
        assert_one_line_error(result, 3, f"cannot reach the Chroma server at 127.0.0.1:{env['CHROMA_PORT']}",
                              "start it or fix CHROMA_HOST/CHROMA_PORT")
        assert time.monotonic() - started < 30

    # A port that accepts connections but never answers (a stuck server): bounded by qabot's timeout.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env["CHROMA_PORT"] = str(silent.getsockname()[1])
        started = time.monotonic()
        result = run_qabot("ask", EDITOR_Q, env=env, timeout=60)
    assert_one_line_error(result, 3, "cannot reach the Chroma server", "Timeout")
    assert time.monotonic() - started < 30


def test_server_lost_mid_run_gives_a_clear_error_then_recovers(chroma_server: ChromaServer, corpus_copy: Path,
                                                               tmp_path: Path, embedder) -> None:  # noqa: ANN001
    """What a long-running process (the bot) sees: an error per question while the server is gone, then answers."""
    settings = chroma_server.settings(corpus_copy, tmp_path / "data")
    pipeline = QAPipeline.from_settings(settings, index=Index.from_settings(settings, embedder=embedder))
    assert "Dan Oliver" in pipeline.ask(EDITOR_Q).text
    chunks = pipeline.index.store.count()

    chroma_server.kill()
    started = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=f"Chroma server at 127.0.0.1:{chroma_server.port}") as lost:
        pipeline.ask(EDITOR_Q)
    assert time.monotonic() - started < 10
    assert "\n" not in str(lost.value) and "start it again" in str(lost.value)
    assert_one_line_error(run_qabot("ask", EDITOR_Q, env=chroma_server.qabot_env(corpus_copy, tmp_path / "data")),
                          3, "cannot reach the Chroma server")

    chroma_server.start()  # same port, same data
    assert "Dan Oliver" in pipeline.ask(EDITOR_Q).text  # the same process recovers without a restart
    assert pipeline.index.store.count() == chunks
    assert pipeline.reindex().unchanged == 5


def test_a_stuck_server_times_out_instead_of_hanging(chroma_server: ChromaServer, corpus_copy: Path, tmp_path: Path,
                                                     embedder, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    monkeypatch.setattr(store_module, "SERVER_REQUEST_TIMEOUT", 2.0)
    settings = chroma_server.settings(corpus_copy, tmp_path / "data")
    pipeline = QAPipeline.from_settings(settings, index=Index.from_settings(settings, embedder=embedder))
    chroma_server.pause()  # alive, connections accepted, nothing answered
    try:
        started = time.monotonic()
        with pytest.raises(StoreUnavailableError, match="did not answer within 2 s"):
            pipeline.ask(EDITOR_Q)
        assert time.monotonic() - started < 10
    finally:
        chroma_server.resume()
    assert "Dan Oliver" in pipeline.ask(EDITOR_Q).text
