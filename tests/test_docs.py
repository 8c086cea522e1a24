"""The README's promises: the two Quickstart commands, and CI running exactly the second."""

from __future__ import annotations

import re

from .conftest import REPO


def _quickstart() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S)
    assert block
    return [ln for ln in block.group(1).splitlines() if ln.strip()]


def test_quickstart_is_two_commands_and_ci_runs_the_test_one() -> None:
    commands = _quickstart()
    assert len(commands) == 2
    assert commands[0].endswith("qabot chat")
    assert commands[1].endswith("pytest")
    assert all("-c constraints.txt" in c for c in commands)  # CPU torch in both paths
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


def test_constraints_pin_cpu_torch() -> None:
    pins = (REPO / "constraints.txt").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", pins, flags=re.M)
