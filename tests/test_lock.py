"""requirements.lock: every package pinned, in step with pyproject.toml, and the CPU torch with no CUDA.

The lock is pip-compile's output for `.[test]` (Linux x86_64, Python 3.11); the README's installs, CI
(.ci/run) and the Dockerfile pass it to pip as a constraints file. Reads files only: no network, no pip.
"""

from __future__ import annotations

import re
import tomllib

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from .conftest import REPO

LOCK = REPO / "requirements.lock"
#: The CPU build that pip finds for this pin; any other torch pulls several GB of CUDA packages.
TORCH = "2.13.0"
#: What a CUDA torch drags in (nvidia-cublas, nvidia-cudnn-cu13, ..., cuda-toolkit, triton).
CUDA = re.compile(r"^nvidia-|cuda|^triton$")


def _lock_lines() -> list[tuple[int, str]]:
    """(line number, requirement text) for every line that is not blank or a comment."""
    out = []
    for number, line in enumerate(LOCK.read_text(encoding="utf-8").splitlines(), start=1):
        text = line.split(" #", 1)[0].strip()
        if text and not text.startswith("#"):
            out.append((number, text))
    return out


def _pins() -> dict[str, Version]:
    pins: dict[str, Version] = {}
    for _, text in _lock_lines():
        name, _, version = text.partition("==")
        pins[canonicalize_name(name)] = Version(version)
    return pins


def _declared() -> list[Requirement]:
    """pyproject's [project].dependencies and its `test` extra: what the lock was compiled from."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return [Requirement(r) for r in [*project["dependencies"], *project["optional-dependencies"]["test"]]]


def test_every_lock_line_is_one_exact_pin_that_pip_takes_as_a_constraint() -> None:
    seen: set[str] = set()
    for number, text in _lock_lines():
        # constraints files refuse options, editable or local entries and extras; "==" pins only
        assert not text.startswith("-"), f"line {number}: {text}"
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise AssertionError(f"line {number}: {text}") from exc
        assert not req.url and not req.extras and not req.marker, f"line {number}: {text}"
        specs = list(req.specifier)
        assert len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version, f"line {number}: {text}"
        name = canonicalize_name(req.name)
        assert name not in seen, f"line {number}: {name} pinned twice"
        seen.add(name)
    assert len(seen) > 100  # the whole transitive set, not just the direct dependencies


def test_lock_satisfies_every_dependency_pyproject_declares() -> None:
    pins = _pins()
    problems = []
    for req in _declared():
        if req.marker and not req.marker.evaluate({"extra": "test"}):
            continue
        name = canonicalize_name(req.name)
        if name not in pins:
            problems.append(f"{req}: not in requirements.lock")
        elif not req.specifier.contains(pins[name], prereleases=True):
            problems.append(f"{req}: requirements.lock pins {pins[name]}")
    assert not problems, "refresh the lock (docs/INSTALL-LOCK.md):\n" + "\n".join(problems)


def test_lock_pins_the_cpu_torch_and_no_cuda_packages() -> None:
    lines = [text for _, text in _lock_lines()]
    assert f"torch=={TORCH}" in lines  # exactly, no "+cpu": the pin must also match the wheel on download.pytorch.org
    assert [str(r.specifier) for r in _declared() if canonicalize_name(r.name) == "torch"] == [f"=={TORCH}"]
    cuda = sorted(name for name in _pins() if CUDA.search(name))
    assert not cuda, f"a CUDA torch was locked: {cuda}"


def test_ci_and_the_image_install_with_the_lock() -> None:
    ci = [ln for ln in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines() if "pip install" in ln]
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    image = [ln for ln in dockerfile.splitlines() if ln.startswith("RUN") and "pip install" in ln]
    assert ci and image
    for line in ci + image:
        assert re.search(r"pip install (--no-deps )?-c requirements\.lock ", line), line
    assert re.search(r"^COPY requirements\.lock ", dockerfile, flags=re.M)


def test_lock_starts_with_its_refresh_command() -> None:
    header = LOCK.read_text(encoding="utf-8").splitlines()[:6]
    command = header[4].removeprefix("#").strip()
    assert command.startswith("python3.11 -m venv ") and "pip-compile" in command, header
    assert "--extra test" in command and "-o requirements.lock pyproject.toml" in command, command
    assert command in (REPO / "docs" / "INSTALL-LOCK.md").read_text(encoding="utf-8")
