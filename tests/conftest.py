"""Shared fixtures: a hermetic environment, the real model loaded once, a built index, CLI runners."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rag.embed import Embedder, resolve_model
from rag.settings import SETTINGS_SPEC, Settings, load_settings

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "corpus"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
DEV_QUESTIONS = Path(__file__).resolve().parent / "data" / "dev_questions.jsonl"  # copy of shared/eval
MORE_QUESTIONS = Path(__file__).resolve().parent / "data" / "more_questions.jsonl"
SQUAD2_DEV = Path(__file__).resolve().parent / "data" / "squad2-dev"  # copy of shared/eval (its README)
_SCRIPT = Path(sys.executable).with_name("qabot")
QABOT = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "bot.cli"]


def squad2_dev_questions() -> list[dict]:
    """squad2-dev's 150 questions, in the file's order."""
    return [json.loads(line) for line in (SQUAD2_DEV / "questions.jsonl").read_text().splitlines()]


def part_of_squad2_dev(folder: Path, questions: list[dict]) -> Path:
    """An eval set of squad2-dev's form in `folder`: these of its questions and the articles they name.

    All 150 questions take most of a test's time; a test of the machinery needs far fewer.
    """
    (folder / "corpus").mkdir(parents=True)
    (folder / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    for doc in {d for q in questions for d in q.get("gold_docs", [])}:
        shutil.copy(SQUAD2_DEV / "corpus" / f"{doc}.txt", folder / "corpus")
    return folder


@pytest.fixture(autouse=True)
def hermetic_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No setting leaks in from the developer's shell or .env; the hub is never contacted."""
    for var in SETTINGS_SPEC:
        monkeypatch.delenv(var.env, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("ANONYMIZED_TELEMETRY", "False")


@pytest.fixture(scope="session")
def embedder() -> Embedder:
    """The real packaged all-MiniLM-L6-v2, loaded once for the whole run."""
    return Embedder(resolve_model("all-MiniLM-L6-v2"), batch_size=64, torch_threads=1)


@pytest.fixture
def corpus_copy(tmp_path: Path) -> Path:
    """A writable copy of the five articles."""
    dest = tmp_path / "corpus"
    shutil.copytree(CORPUS, dest)
    return dest


def make_settings(corpus: Path, data: Path, **overrides: object) -> Settings:
    return load_settings(environ={}, corpus_dir=corpus, data_dir=data, **overrides)


@pytest.fixture(scope="session")
def built_data_dir(tmp_path_factory: pytest.TempPathFactory, embedder: Embedder) -> Path:
    """A data folder holding the index of the real corpus, built once (read-only use)."""
    from rag.index import Index

    data = tmp_path_factory.mktemp("built")
    index = Index.from_settings(make_settings(CORPUS, data), embedder=embedder)
    index.sync()
    return data


@pytest.fixture(scope="session")
def pipeline(built_data_dir: Path, embedder: Embedder):  # -> QAPipeline
    """The offline pipeline over the real corpus, shared by read-only tests."""
    from rag.index import Index
    from rag.pipeline import QAPipeline

    settings = make_settings(CORPUS, built_data_dir)
    return QAPipeline.from_settings(settings, index=Index.from_settings(settings, embedder=embedder))


def open_pipeline(corpus: Path, data: Path, embedder: Embedder, *, sync: bool = False, **overrides: object):  # -> QAPipeline
    """A pipeline reusing the session's model; over the index as it is, or synced with `corpus` first."""
    from rag.index import Index
    from rag.pipeline import QAPipeline

    settings = make_settings(corpus, data, **overrides)
    return QAPipeline.from_settings(settings, sync=sync, index=Index.from_settings(settings, embedder=embedder))


@pytest.fixture
def openai_server():  # -> Iterator[FakeOpenAI]
    """A scripted OpenAI-compatible server on loopback (tests/fakes/llm_servers.py)."""
    from .fakes.llm_servers import FakeOpenAI

    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def openai_pipeline(openai_server, built_data_dir: Path, embedder: Embedder):  # noqa: ANN001
    """The real pipeline over the real corpus, answering through the fake OpenAI server."""
    return open_pipeline(CORPUS, built_data_dir, embedder, answerer="openai", llm_base_url=openai_server.base_url,
                         llm_model="fake", openai_api_key="sk-test-key", llm_timeout=3.0)


@pytest.fixture(scope="session")
def gemma_model() -> Path:
    """The real gemma-3-270m GGUF of the test extra, assembled once per machine (tests/real_llm.py)."""
    from .real_llm import gemma_gguf

    return gemma_gguf()


#: Settings of every real-model test: short replies and two sources (a ~600-token prompt) keep a call to
#: a few seconds, and to ~10 s on two cores shared with other test runs.
REAL_LLM_SETTINGS = {"llm_max_tokens": 32, "top_k": 2, "llm_timeout": 90.0, "llm_threads": 2}


@pytest.fixture(scope="session")
def llamacpp_pipeline(gemma_model: Path, built_data_dir: Path, embedder: Embedder):  # -> QAPipeline
    """The real pipeline answering with the real model in process (loaded once per run)."""
    return open_pipeline(CORPUS, built_data_dir, embedder, answerer="llamacpp", llm_model=str(gemma_model),
                         **REAL_LLM_SETTINGS)


def free_port() -> int:
    """A loopback port nothing listens on (once this returns)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def chroma_server(tmp_path: Path):  # -> Iterator[ChromaServer]
    """A real `chroma run` on a free loopback port (tests/fakes/chroma_server.py), stopped at teardown."""
    from .fakes.chroma_server import ChromaServer

    server = ChromaServer(tmp_path / "chroma-server", free_port(), tmp_path / "chroma.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def qabot_process_env(env: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a `qabot` process started by a test: none of the developer's settings."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "CHROMA_", "DISCORD_"))}
    full_env.update({"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})
    full_env.update(env or {})
    return full_env


def popen_qabot(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """Like run_qabot, but started in the background (the caller bounds its waits and kills it)."""
    return subprocess.Popen([*QABOT, *args], cwd=REPO, env=qabot_process_env(env), stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_qabot(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    input: str | None = None,
    timeout: float = 180,
) -> subprocess.CompletedProcess[str]:
    """Run the real `qabot` command in a fresh process, as a user would (bounded in time)."""
    return subprocess.run(
        [*QABOT, *args],
        cwd=cwd or REPO,
        env=qabot_process_env(env),
        input=input,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


#: How far from its threshold a score must be for a test to assert the decision it makes. Installs and CPUs
#: move scores a little (int8 kernels with and without VNNI: up to 0.012 reader logits, benchmarks/cpu_kernels.py;
#: a dependency's new release: ~0.003 evidence): a decision closer than this is a knife edge, reported as one
#: instead of flipping from one machine to the next.
EVIDENCE_MARGIN = 0.02
SPAN_MARGIN = 0.25


def assert_answered(answer, settings) -> None:  # noqa: ANN001 - (Answer, Settings)
    """Answered, and not by a hair: the evidence and the reader's margin stand clear of their thresholds."""
    assert not answer.refused, f"refused: {answer.question!r} (evidence {answer.evidence:.3f}, margin {answer.margin})"
    assert answer.evidence >= settings.min_evidence + EVIDENCE_MARGIN, (
        f"knife edge: {answer.question!r} answered with evidence {answer.evidence:.4f}, within {EVIDENCE_MARGIN} of "
        f"QABOT_MIN_EVIDENCE {settings.min_evidence}: another CPU or install may refuse it")
    assert answer.margin is None or answer.margin >= settings.min_span_margin + SPAN_MARGIN, (
        f"knife edge: {answer.question!r} answered with reader margin {answer.margin:.3f}, within {SPAN_MARGIN} of "
        f"QABOT_MIN_SPAN_MARGIN {settings.min_span_margin}")


def assert_refused(answer, settings) -> None:  # noqa: ANN001 - (Answer, Settings)
    """Refused, and clearly: by evidence well under its threshold, or by a reader margin well under its own."""
    assert answer.refused, f"answered: {answer.question!r}: {answer.text[:200]}"
    by_evidence = answer.evidence <= settings.min_evidence - EVIDENCE_MARGIN
    by_reader = answer.margin is not None and answer.margin <= settings.min_span_margin - SPAN_MARGIN
    assert by_evidence or by_reader, (
        f"knife edge: {answer.question!r} refused with evidence {answer.evidence:.4f} (QABOT_MIN_EVIDENCE "
        f"{settings.min_evidence}) and reader margin {answer.margin} (QABOT_MIN_SPAN_MARGIN {settings.min_span_margin}): "
        "another CPU or install may answer it")


def assert_one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    """A user-facing failure: the given exit code, one line on stderr, no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    for needle in needles:
        assert needle in lines[0], lines[0]


# ------------------------------------------------------------------------------------- the image install
IMAGE_INSTALL_TEST = "test_deploy.py::test_image_install_in_a_fresh_venv_answers_from_another_folder"
_IMAGE_INSTALL = pytest.StashKey["object"]()


@pytest.hookimpl(trylast=True)  # after -k/-m have deselected what will not run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Start the fresh-venv image install (~1.5-2 min) now, on a thread, and run its test last.

    The install shares nothing with the other tests (its own venv and temp folder), so it can run
    beside them; its test then only waits for what is left of it (tests/test_deploy.py: ImageInstall).
    """
    selected = [item for item in items if item.nodeid.endswith(IMAGE_INSTALL_TEST)]
    if not selected or config.option.collectonly:
        return
    from .test_deploy import ImageInstall

    config.stash[_IMAGE_INSTALL] = ImageInstall(Path(tempfile.mkdtemp(prefix="qabot-image-install-"))).start()
    items[:] = [item for item in items if item not in selected] + selected


def pytest_sessionfinish(session: pytest.Session) -> None:
    install = session.config.stash.get(_IMAGE_INSTALL, None)
    if install is not None:
        install.stop()  # an interrupted run leaves no pip running and no 2 GB venv behind


@pytest.fixture
def image_install(request: pytest.FixtureRequest):  # -> ImageInstall
    """The image install started at collection (or now, if it was not), removed after its test."""
    from .test_deploy import ImageInstall

    install = request.config.stash.get(_IMAGE_INSTALL, None)
    if install is None:
        install = ImageInstall(Path(tempfile.mkdtemp(prefix="qabot-image-install-"))).start()
    try:
        yield install
    finally:
        install.stop()
