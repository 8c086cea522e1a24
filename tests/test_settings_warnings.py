"""A variable that looks like a qabot setting but is not one (a typo, a removed setting) is warned about once.

Such a variable changes nothing, so it is never an error: the command runs and exits as it would
without it, and one `qabot: warning:` line on stderr names the setting that was probably meant.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.settings import NOT_SETTINGS, REMOVED_SETTINGS, SETTINGS_SPEC

from .conftest import run_qabot

#: Real commands that read the settings and return at once: `feedback export` over an empty data
#: folder (exit 1, one error line: no votes yet) and `feedback --help` (exit 0, after the settings are read).
COMMANDS = [("feedback", "export"), ("feedback", "--help")]


def _qabot(args: tuple[str, ...], tmp_path: Path, env: dict[str, str], dotenv: str | None = None):  # -> CompletedProcess
    """`qabot ARGS` in a folder of its own (with `dotenv` as its ./.env) and an empty data folder."""
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True, exist_ok=True)
    (work / ".env").unlink(missing_ok=True)
    if dotenv is not None:
        (work / ".env").write_text(dotenv, encoding="utf-8")
    return run_qabot(*args, cwd=work, env={"QABOT_DATA_DIR": str(work / "data"), **env}, timeout=60)


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("qabot: warning:")]


@pytest.mark.parametrize("args", COMMANDS)
def test_a_mistyped_setting_is_warned_once_naming_the_real_one_and_changes_no_exit_code(
        args: tuple[str, ...], tmp_path: Path) -> None:
    plain = _qabot(args, tmp_path, {})
    assert not _warnings(plain.stderr), plain.stderr
    typo = _qabot(args, tmp_path, {"QABOT_MIN_EVIDNCE": "0.3"})
    assert typo.returncode == plain.returncode, (typo.returncode, plain.returncode, typo.stderr)
    assert typo.stdout == plain.stdout
    assert _warnings(typo.stderr) == [
        "qabot: warning: QABOT_MIN_EVIDNCE (set in the environment) is not a qabot setting, so it changes nothing; "
        "did you mean QABOT_MIN_EVIDENCE?"
    ], typo.stderr
    # the rest of stderr (feedback export's one error line) is what it was without the typo
    assert [ln for ln in typo.stderr.splitlines() if ln not in _warnings(typo.stderr)] == plain.stderr.splitlines()


@pytest.mark.parametrize("removed", sorted(REMOVED_SETTINGS))
def test_a_removed_setting_in_dotenv_is_warned_once_naming_what_replaced_it(removed: str, tmp_path: Path) -> None:
    plain = _qabot(("feedback", "export"), tmp_path, {})
    result = _qabot(("feedback", "export"), tmp_path, {}, dotenv=f"QABOT_TOP_K=3\n{removed}=0.3\n")
    assert result.returncode == plain.returncode == 1, result.stderr
    assert _warnings(result.stderr) == [
        f"qabot: warning: {removed} (set in .env) was removed and changes nothing; "
        "QABOT_MIN_EVIDENCE replaced it (see .env.example)"
    ], result.stderr


def test_a_variable_set_both_in_the_environment_and_in_dotenv_is_warned_once(tmp_path: Path) -> None:
    result = _qabot(("feedback", "--help"), tmp_path, {"QABOT_TOPK": "3"}, dotenv="QABOT_TOPK=4\nQABOT_ANSWERR=openai\n")
    assert result.returncode == 0, result.stderr
    assert _warnings(result.stderr) == [
        "qabot: warning: QABOT_ANSWERR (set in .env) is not a qabot setting, so it changes nothing; "
        "did you mean QABOT_ANSWERER?",
        "qabot: warning: QABOT_TOPK (set in the environment) is not a qabot setting, so it changes nothing; "
        "did you mean QABOT_TOP_K?",
    ], result.stderr


def test_wrong_case_and_far_off_names_are_warned_too(tmp_path: Path) -> None:
    env = {"qabot_top_k": "3", "QABOT_XYZZY": "1", "QABOT_DEBUG": "1", "QABOT_DISCORD_TOKEN": "x"}
    result = _qabot(("feedback", "--help"), tmp_path, env)
    assert result.returncode == 0, result.stderr
    assert _warnings(result.stderr) == [
        # names are compared without the QABOT_ they share, so a far-off one gets no misleading guess
        "qabot: warning: QABOT_DEBUG (set in the environment) is not a qabot setting, so it changes nothing; "
        "see .env.example for every setting",
        "qabot: warning: QABOT_DISCORD_TOKEN (set in the environment) is not a qabot setting, so it changes nothing; "
        "did you mean DISCORD_TOKEN?",
        "qabot: warning: QABOT_XYZZY (set in the environment) is not a qabot setting, so it changes nothing; "
        "see .env.example for every setting",
        "qabot: warning: qabot_top_k (set in the environment) is not a qabot setting, so it changes nothing; "
        "did you mean QABOT_TOP_K? (names are case-sensitive)",
    ], result.stderr


def test_real_settings_and_other_programs_variables_are_not_warned_about(tmp_path: Path) -> None:
    env = {
        "QABOT_TOP_K": "3", "CHROMA_PORT": "8001", "DISCORD_TOKEN": "x",  # settings
        **{name: "/tmp/x" for name in NOT_SETTINGS},  # the test suite's and benchmarks' own
        # chromadb reads CHROMA_* itself, and DISCORD_*/OPENAI_* names belong to other tools: not checked
        "CHROMA_SERVER_HOST": "localhost", "CHROMA_HOTS": "x", "DISCORD_WEBHOOK_URL": "x", "OPENAI_ORG_ID": "x",
    }
    result = _qabot(("feedback", "--help"), tmp_path, env, dotenv="QABOT_REFUSE=false\nCOMPOSE_PROJECT_NAME=q\n")
    assert result.returncode == 0 and result.stderr == "", result.stderr


def test_a_typo_next_to_a_bad_value_keeps_the_settings_error_and_its_exit_code(tmp_path: Path) -> None:
    bad = _qabot(("feedback", "export"), tmp_path, {"QABOT_TOP_K": "lots"})
    both = _qabot(("feedback", "export"), tmp_path, {"QABOT_TOP_K": "lots", "QABOT_TOP_KK": "3"})
    assert bad.returncode == both.returncode == 2
    assert both.stderr.splitlines() == [
        "qabot: warning: QABOT_TOP_KK (set in the environment) is not a qabot setting, so it changes nothing; "
        "did you mean QABOT_TOP_K?",
        *bad.stderr.splitlines(),
    ]


def test_every_removed_setting_names_a_real_replacement() -> None:
    names = {var.env for var in SETTINGS_SPEC}
    assert REMOVED_SETTINGS and not names & set(REMOVED_SETTINGS)
    assert set(REMOVED_SETTINGS.values()) <= names
    assert not names & NOT_SETTINGS
