"""Settings come from the environment and .env, are validated once, and are documented."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rag.errors import SettingsError
from rag.settings import SETTINGS_SPEC, env_example, load_settings, settings_table

from .conftest import REPO, assert_one_line_error, run_qabot


def test_env_example_documents_every_variable_with_its_default() -> None:
    text = (REPO / ".env.example").read_text(encoding="utf-8")
    assert text == env_example(), "regenerate: python -c 'from rag.settings import env_example; print(env_example(), end=\"\")' > .env.example"
    assigned = dict(re.findall(r"^([A-Z_]+)=(.*)$", text, flags=re.M))
    assert assigned == {v.env: v.default for v in SETTINGS_SPEC}


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


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"QABOT_TOP_K": "lots"}, "QABOT_TOP_K='lots' is not a whole number"),
        ({"QABOT_ANSWERER": "gpt5"}, "unknown answerer 'gpt5'"),
        ({"QABOT_CHUNK_OVERLAP": "150"}, "QABOT_CHUNK_OVERLAP"),
        ({"QABOT_REFUSE": "maybe"}, "is not true or false"),
        ({"QABOT_SENTENCE_PRECISION": "fp16"}, "QABOT_SENTENCE_PRECISION: 'fp16' is not int8 or float32"),
    ],
)
def test_invalid_values_are_rejected_with_the_variable_name(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(needle)):
        load_settings(environ=env)


def test_secrets_never_appear_in_repr() -> None:
    s = load_settings(environ={"DISCORD_TOKEN": "tok-SECRET-1", "OPENAI_API_KEY": "sk-SECRET-2",
                               "ANTHROPIC_API_KEY": "ak-SECRET-3", "CHROMA_AUTH_TOKEN": "ch-SECRET-4"})
    assert "SECRET" not in repr(s) and "SECRET" not in str(s)
    assert s.discord_token == "tok-SECRET-1"


def test_cli_reads_dotenv_from_the_working_directory_and_environment_wins(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("QABOT_ANSWERER=nonsense\n")
    result = run_qabot("ingest", cwd=tmp_path)
    assert_one_line_error(result, 2, "QABOT_ANSWERER", "unknown answerer 'nonsense'")
    result = run_qabot("ingest", cwd=tmp_path, env={"QABOT_ANSWERER": "also-bad"})
    assert_one_line_error(result, 2, "unknown answerer 'also-bad'")


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


@pytest.mark.parametrize("command", ["", "ingest", "ask", "chat", "eval"])
def test_every_command_has_help(command: str) -> None:
    from click.testing import CliRunner

    from bot.cli import cli

    result = CliRunner().invoke(cli, [*command.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: " in result.output
