"""chromadb is imported with the `overrides` checks skipped (rag/chroma_import.py): only the checks.

What is skipped must be what passes anyway, the real decorator must be back afterwards, and an
upgrade of chromadb that starts to rely on what the stand-in does not do must fail here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import overrides
import pytest

from rag.chroma_import import override_checks_skipped


def _not_overriding():  # noqa: ANN202 - a class whose @override overrides nothing
    class Base:
        def kept(self) -> int:
            return 1

    class Sub(Base):
        @overrides.override
        def invented(self) -> int:
            return 2

    return Sub


def test_the_real_decorator_is_back_after_the_block() -> None:
    real = (overrides.override, overrides.overrides)
    with override_checks_skipped():
        assert overrides.override is not real[0]
        assert _not_overriding()().invented() == 2  # not checked inside
    assert (overrides.override, overrides.overrides) == real
    with pytest.raises(TypeError, match="No super class method found"):
        _not_overriding()


def test_the_stand_in_marks_what_enforce_overrides_checks_for() -> None:
    with override_checks_skipped():
        class Base(overrides.EnforceOverrides):
            def run(self) -> int:
                return 1

        class Sub(Base):
            @overrides.override(check_signature=False)
            def run(self) -> int:
                return 2

            @overrides.overrides
            def __repr__(self) -> str:
                return "sub"

    assert Sub().run() == 2 and Sub.run.__override__ is True and repr(Sub()) == "sub"


def test_installed_chromadb_asks_for_no_runtime_checks() -> None:
    """`check_at_runtime=True` wraps a method in a checking call; the stand-in would skip that silently."""
    spec = importlib.util.find_spec("chromadb")
    assert spec is not None and spec.origin is not None
    users = [p for p in Path(spec.origin).parent.rglob("*.py") if "check_at_runtime" in p.read_text(encoding="utf-8")]
    assert users == []


def test_chromadb_passes_the_real_checks(tmp_path: Path) -> None:
    """Importing chromadb and opening an embedded client with every check on works: skipping them changes nothing."""
    code = ("import chromadb, overrides; from chromadb.config import Settings; "
            f"c = chromadb.PersistentClient(path={str(tmp_path / 'chroma')!r}, "
            "settings=Settings(anonymized_telemetry=False, _env_file=None)); "
            "c.get_or_create_collection('checks').add(ids=['a'], embeddings=[[0.1, 0.2]]); "
            "print(overrides.override.__module__)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "overrides.overrides"  # the real decorator ran
