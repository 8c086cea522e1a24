"""chromadb and bm25s are imported without what qabot never runs (rag/lean_imports.py).

What is skipped must be what passes anyway or what qabot does not use, the real decorator and
scipy must be importable afterwards, and an upgrade that starts to rely on what is skipped
must fail here.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import overrides
import pytest

from .conftest import REPO

from rag.lean_imports import override_checks_skipped


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


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO)


def test_bm25s_is_imported_without_scipy_which_stays_importable() -> None:
    done = _python("import sys, rag.text, rag.retrieve\n"
                   "assert 'bm25s' in sys.modules, 'bm25s not imported'\n"
                   "assert not [m for m in sys.modules if m.split('.')[0] == 'scipy'], 'scipy imported'\n"
                   "import scipy.sparse\n"
                   "print(scipy.sparse.csc_matrix((2, 2)).shape)")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "(2, 2)"


def test_the_numpy_backend_builds_the_matrix_scipy_builds() -> None:
    """qabot builds with csc_backend="numpy" (no scipy); the index must be the one scipy would build."""
    code = """
import scipy.sparse  # loaded first: bm25s then has its scipy backend too
from pathlib import Path
import numpy as np
from rag.lean_imports import import_bm25s
from rag.text import terms
bm25s = import_bm25s()
vocab, rows = {}, []
for path in sorted(Path("corpus").glob("*.txt")):
    for para in path.read_text(encoding="utf-8").split("\\n\\n"):
        if terms(para):
            rows.append([vocab.setdefault(t, len(vocab)) for t in terms(para)])
built = {}
for backend in ("scipy", "numpy"):
    index = bm25s.BM25(csc_backend=backend)
    index.index(bm25s.tokenization.Tokenized(ids=rows, vocab=dict(vocab)), show_progress=False)  # it adds "" to the dict
    built[backend] = index.scores
assert len(rows) > 50, len(rows)
for key in ("data", "indices", "indptr"):
    assert np.array_equal(built["scipy"][key], built["numpy"][key]), key
print("same")
"""
    done = _python(code)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "same"
