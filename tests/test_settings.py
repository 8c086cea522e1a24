"""Settings come from the environment and .env, are validated once, and are documented."""

from __future__ import annotations

import contextlib
import json
import math
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rag.errors import SettingsError
from rag.settings import SETTINGS_SPEC, env_example, load_settings, settings_table

from .conftest import REPO, assert_one_line_error, run_qabot


def test_env_example_documents_every_variable_with_its_default() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), "regenerate: python -c 'from rag.settings import env_example; print(env_example(), end=\"\")' > .env.example"
    assigned = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    commented = dict(re.findall(r"^# ([A-Z_]+)=(.*)$", text, flags=re.M))
    assert len(re.findall(r"^(?:# )?[A-Z_]+=", text, flags=re.M)) == len(SETTINGS_SPEC)  # each one once
    assert {**assigned, **commented} == {v.env: v.default for v in SETTINGS_SPEC}
    # only the folders whose defaults are relative to where qabot runs are commented out (the image sets its own)
    assert set(commented) == {"QABOT_CORPUS_DIR", "QABOT_DATA_DIR"}
    for name, default in commented.items():
        help_line = text.split(f"\n# {name}=")[0].rsplit("\n", 1)[1]
        assert f"Default: {default} (relative to the folder qabot runs in)" in help_line, help_line
        assert "Docker image" in help_line, help_line


def _dockerfile_env() -> dict[str, str]:
    """Every variable the Dockerfile sets with ENV (either form), in any stage."""
    import shlex

    text = re.sub(r"\\\n", " ", (REPO / "Dockerfile").read_text(encoding="utf-8"))  # join continued lines
    env: dict[str, str] = {}
    for line in text.splitlines():
        words = line.split(None, 1)
        if len(words) != 2 or words[0].upper() != "ENV":
            continue
        tokens = shlex.split(words[1], comments=True)
        if tokens and "=" not in tokens[0]:  # legacy `ENV KEY value`
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        env.update(token.split("=", 1) for token in tokens)
    return env


def test_env_example_copied_to_env_never_overrides_what_the_docker_image_sets() -> None:
    """`docker run --env-file .env` with a copy of .env.example keeps the image's ENV (its folders above all)."""
    image_env = _dockerfile_env()
    assert {"QABOT_DATA_DIR": "/data", "QABOT_CORPUS_DIR": "/app/corpus"}.items() <= image_env.items(), image_env
    lines = (REPO / ".env.example").read_text(encoding="utf-8").splitlines()
    # docker's --env-file format: '#' starts a comment line, a line is KEY=VALUE (or KEY, taken from the host)
    set_here = dict(line.split("=", 1) for line in lines if line.strip() and not line.lstrip().startswith("#")
                    and "=" in line)
    clashes = {name: (value, image_env[name]) for name, value in set_here.items()
               if name in image_env and value != image_env[name]}
    assert not clashes, f".env.example sets what the Dockerfile sets with ENV: {clashes}"


def test_readme_settings_table_lists_every_variable() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert settings_table() in readme
    for var in SETTINGS_SPEC:
        assert f"`{var.env}`" in readme, var.env


def test_defaults_and_overrides() -> None:
    s = load_settings(environ={})
    assert (s.answerer, s.top_k, s.chunk_size, s.server_mode) == ("extractive", 5, 200, False)
    s = load_settings(environ={"QABOT_TOP_K": "7", "CHROMA_HOST": "localhost", "QABOT_DISCORD_CHANNELS": "1, 2"})
    assert (s.top_k, s.server_mode, s.channel_allowlist) == (7, True, frozenset({1, 2}))


def test_secrets_never_appear_in_repr() -> None:
    s = load_settings(environ={"DISCORD_TOKEN": "tok-SECRET-1", "OPENAI_API_KEY": "sk-SECRET-2",
                               "ANTHROPIC_API_KEY": "ak-SECRET-3", "CHROMA_AUTH_TOKEN": "ch-SECRET-4"})
    assert "SECRET" not in repr(s) and "SECRET" not in str(s)
    assert s.discord_token == "tok-SECRET-1"


def test_cli_reads_dotenv_from_the_working_directory_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QABOT_ANSWERER=nonsense\n")
    result = run_qabot("ingest", cwd=tmp_path)
    assert_one_line_error(result, 2, "QABOT_ANSWERER='nonsense' is not a known value")
    result = run_qabot("ingest", cwd=tmp_path, env={"QABOT_ANSWERER": "also-bad"})
    assert_one_line_error(result, 2, "QABOT_ANSWERER='also-bad'")


def test_unknown_embedding_model_is_a_settings_error(tmp_path: Path) -> None:
    result = run_qabot("ingest", env={"QABOT_EMBED_MODEL": "acme/no-such-model", "QABOT_DATA_DIR": str(tmp_path / "d"),
                                      "QABOT_CORPUS_DIR": str(REPO / "corpus")})
    assert_one_line_error(result, 2, "QABOT_EMBED_MODEL=acme/no-such-model", "unknown model")


def test_unwritable_data_folder_is_a_settings_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = run_qabot("ingest", env={"QABOT_DATA_DIR": str(blocker / "data"), "QABOT_CORPUS_DIR": str(REPO / "corpus")})
    assert_one_line_error(result, 2, "QABOT_DATA_DIR", "cannot write there")


def test_missing_corpus_folder_never_empties_the_index(tmp_path: Path) -> None:
    result = run_qabot("ingest", env={"QABOT_CORPUS_DIR": str(tmp_path / "nope"), "QABOT_DATA_DIR": str(tmp_path / "d")})
    assert_one_line_error(result, 1, "does not exist", "QABOT_CORPUS_DIR")


def test_a_mistyped_corpus_folder_is_named_once_and_answers_come_from_the_index(tmp_path: Path,
                                                                                built_data_dir: Path) -> None:
    a_file = tmp_path / "corpus.txt"
    a_file.write_text("not a folder", encoding="utf-8")
    for corpus, problem in ((tmp_path / "corpsu", "does not exist"), (a_file, "is a file, not a folder")):
        env = {"QABOT_CORPUS_DIR": str(corpus), "QABOT_DATA_DIR": str(built_data_dir)}
        result = run_qabot("ask", "--json", "Who is the editor-in-chief of 5Gradar?", env=env)
        assert result.returncode == 0, result.stderr
        assert not json.loads(result.stdout)["refused"]
        warnings = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(warnings) == 1, warnings
        assert f"the corpus folder {corpus} {problem}" in warnings[0] and "answering from the index as it is" in warnings[0]
    health = run_qabot("health", env=env, timeout=60)  # the last one: a file given as the folder
    assert f"warn  corpus   the corpus folder {a_file} is a file, not a folder" in health.stdout, health.stdout
    result = run_qabot("ingest", env={"QABOT_CORPUS_DIR": str(a_file), "QABOT_DATA_DIR": str(tmp_path / "d")})
    assert_one_line_error(result, 1, f"the corpus folder {a_file} is a file, not a folder", "QABOT_CORPUS_DIR")


@pytest.mark.parametrize("command", ["", "ingest", "ask", "chat", "eval"])
def test_every_command_has_help(command: str) -> None:
    from click.testing import CliRunner

    from bot.cli import cli

    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output


# -- every setting has a declared range, and the command line holds every value to it ------------------
def _invoke(env: dict[str, str]):  # -> click.testing.Result
    """The real `qabot` group with these variables set, through a command that does nothing else."""
    from click.testing import CliRunner

    from bot.cli import cli

    with tempfile.TemporaryDirectory() as empty, contextlib.chdir(empty):  # no stray ./.env
        return CliRunner().invoke(cli, ["feedback", "--help"], env=env)


def _within_declared_range(var, raw: str, value: object) -> bool:  # noqa: ANN001
    """An oracle written apart from rag/settings.py: what an accepted value must look like."""
    text = raw.strip()
    if var.kind in ("int", "float"):
        return text.isascii() and math.isfinite(value) and (var.low <= value <= var.high or value == var.special)  # type: ignore[operator]
    if var.kind == "bool":
        return text.lower() in ("1", "true", "yes", "on", "0", "false", "no", "off", "")
    if var.kind == "path":
        return bool(text)
    if var.choices:
        return value in var.choices
    if var.pattern:
        return re.fullmatch(var.pattern, text) is not None
    return True  # free text: model names, keys, instructions


def test_every_setting_declares_what_it_allows() -> None:
    for var in SETTINGS_SPEC:
        if var.kind in ("int", "float"):
            assert var.low is not None and var.high is not None, var.env
            assert var.low <= float(var.default) <= var.high or float(var.default) == var.special, var.env
        assert var.allowed, var.env
        var.parse(var.default)  # every default is inside its own range


HOSTILE = ["inf", "-inf", "Infinity", "nan", "NaN", "-1", "-4", "0", "1e400", "-1e400", "9" * 40, "1e9", "",
           "   ", "lots", "５", "٣", "1_0", "0x10", "😀", "é", "\u202e1", "1,5", "true", "LOUD", "debug", "../x"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(var=st.sampled_from(SETTINGS_SPEC), raw=st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12)))
def test_any_value_outside_a_settings_range_is_a_one_line_error_naming_it(var, raw: str) -> None:  # noqa: ANN001
    assume("\x00" not in raw and "\n" not in raw)  # not representable in an environment variable / a .env line
    result = _invoke({var.env: raw})
    if result.exit_code == 0:
        value = getattr(load_settings(environ={var.env: raw}), var.attr)
        assert _within_declared_range(var, raw, value), (var.env, raw, value)
        return
    assert result.exit_code == 2, (var.env, raw, result.output)
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    assert lines[0].startswith(f"qabot: error: {var.env}="), lines[0]
    assert f"(allowed: {var.allowed}" in lines[0], lines[0]


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QABOT_TOP_K": "lots"}, "QABOT_TOP_K='lots' is not a whole number (allowed: 1..50)"),
        ({"QABOT_ANSWERER": "gpt5"}, "QABOT_ANSWERER='gpt5' is not a known value (allowed: extractive, llamacpp, openai, ollama"),
        ({"QABOT_CHUNK_OVERLAP": "150"}, "QABOT_CHUNK_OVERLAP=150 is out of range (allowed: 0..99, under half"),
        ({"QABOT_REFUSE": "maybe"}, "QABOT_REFUSE='maybe' is not true or false"),
        ({"QABOT_SENTENCE_PRECISION": "fp16"}, "QABOT_SENTENCE_PRECISION='fp16' is not a known value (allowed: int8, float32)"),
        # what the issue found accepted or crashing:
        ({"QABOT_MAX_FILE_MB": "inf"}, "QABOT_MAX_FILE_MB='inf' is not a finite number (allowed: 0.01..1000)"),
        ({"QABOT_MAX_FILE_MB": "nan"}, "QABOT_MAX_FILE_MB='nan' is not a finite number (allowed: 0.01..1000)"),
        ({"QABOT_LOG_LEVEL": "LOUD"}, "QABOT_LOG_LEVEL='LOUD' is not a known value (allowed: DEBUG, INFO, WARNING"),
        ({"QABOT_MIN_EVIDENCE": "5"}, "QABOT_MIN_EVIDENCE='5' is out of range (allowed: 0..1)"),
        ({"QABOT_MIN_EVIDENCE": "-3"}, "QABOT_MIN_EVIDENCE='-3' is out of range (allowed: 0..1)"),
        ({"QABOT_TORCH_THREADS": "-4"}, "QABOT_TORCH_THREADS='-4' is out of range (allowed: 0..256)"),
        ({"QABOT_MAX_CONCURRENT": "0"}, "QABOT_MAX_CONCURRENT='0' is out of range (allowed: 1..64)"),
    ],
)
def test_invalid_values_are_one_line_errors_naming_the_variable_and_range(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(needle)):
        load_settings(environ=env)
    result = _invoke(env)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert result.output.startswith(f"qabot: error: {needle}") and result.output.count("\n") == 1, result.output
    assert "QABOT_RATE_LIMIT" not in result.output


def test_library_overrides_are_held_to_the_same_ranges() -> None:
    with pytest.raises(SettingsError, match=re.escape("QABOT_TOP_K=0 is out of range (allowed: 1..50)")):
        load_settings(environ={}, top_k=0)
    with pytest.raises(SettingsError, match="QABOT_LLM_TIMEOUT=inf is not a number"):
        load_settings(environ={}).replace(llm_timeout=float("inf"))


# -- .env ---------------------------------------------------------------------------------------------
def test_a_dotenv_that_is_not_utf8_is_a_one_line_error_naming_it(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"QABOT_TOP_K=3\nQABOT_LLM_INSTRUCTIONS=R\xe9ponds en fran\xe7ais\n")
    result = run_qabot("health", cwd=tmp_path, env={"QABOT_DATA_DIR": str(tmp_path / "data")})
    assert_one_line_error(result, 2, ".env is not UTF-8 text (byte 0xe9 on line 2)", "save it as UTF-8")


def test_each_bad_dotenv_line_is_warned_once(tmp_path: Path, built_data_dir: Path) -> None:
    (tmp_path / ".env").write_text("QABOT_TOP_K=3\nthis line is not a setting\nQABOT_REFUSE=true\n", encoding="utf-8")
    env = {"QABOT_DATA_DIR": str(built_data_dir), "QABOT_CORPUS_DIR": str(REPO / "corpus")}
    result = run_qabot("health", cwd=tmp_path, env=env, timeout=60)  # imports chromadb, which reads ./.env again
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.count("line 2") == 1, result.stderr
    assert "qabot: warning: .env line 2 is not KEY=VALUE; it was ignored" in result.stderr
    assert "python-dotenv" not in result.stderr
