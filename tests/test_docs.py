"""The README's promises: the two Quickstart commands, and CI running exactly the second."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from .conftest import REPO, run_qabot


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
    assert all("-c requirements.lock" in c for c in commands)  # every package locked, CPU torch, in both paths
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()


def test_the_lock_pins_cpu_torch() -> None:
    pins = (REPO / "requirements.lock").read_text(encoding="utf-8")
    assert re.search(r"^torch==2\.13\.0$", pins, flags=re.M)


def _help(*args: str) -> str:
    from click.testing import CliRunner

    from bot.cli import cli

    result = CliRunner().invoke(cli, [*args, "--help"], terminal_width=120)
    assert result.exit_code == 0, result.output
    return result.output


def test_ask_help_shows_the_stdin_example_on_one_line() -> None:
    assert "printf 'q1\\nq2\\n' | qabot ask --json" in _help("ask")


def test_one_exit_code_scheme_in_help_and_readme() -> None:
    from rag.errors import EXIT_CODES

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    group_help = " ".join(_help().split())
    for code, meaning in EXIT_CODES.items():
        assert f"| `{code}` | {meaning} |" in readme, code
        assert f"{code} {meaning}" in group_help, code
    ingest_help = " ".join(_help("ingest").split())
    assert all(f"{code} " in ingest_help or f"{code} when" in ingest_help for code in (0, 1, 2, 3)), ingest_help
    assert "3 when the index cannot be used" in ingest_help and "no space left" in ingest_help


def test_the_readme_eval_example_runs_in_a_fresh_clone(built_data_dir: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    usage = readme.split("## Usage", 1)[1].split("\n## ", 1)[0]
    line = next(ln for ln in usage.splitlines() if ln.startswith("qabot eval "))
    args = shlex.split(line.split("#", 1)[0])[1:]
    questions = args[args.index("--questions") + 1]
    assert (REPO / questions).is_file(), f"{questions} is not in the repository"
    result = run_qabot(*args, env={"QABOT_CORPUS_DIR": str(REPO / "corpus"), "QABOT_DATA_DIR": str(built_data_dir)},
                       cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
