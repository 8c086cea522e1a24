"""Import chromadb and bm25s without what they load for code qabot never runs.

A cold `qabot ask` is mostly imports (~1.1 s of CPU on the 2-core machine); two of them do work
whose result qabot does not use.

chromadb marks ~200 methods with `overrides`' `@override`. At class definition that decorator
finds the base classes by disassembling the caller's bytecode and compares each signature
with the base method's, with typing-level subtype checks: a development-time assertion that
never fails in a released chromadb, and ~0.15 s of a cold `qabot ask` (importing chromadb and
opening a client, 1.08 -> 0.95 s CPU, median of 9 alternated runs at load ~5.3, 2026-12-02).
While chromadb is imported, `overrides.override` and `overrides.overrides` (the same decorator
under its old name) only set the `__override__` mark that the package's `EnforceOverrides`
metaclass looks for, so every class chromadb defines is the same. What is skipped is what
raises at import time when chromadb is broken, and copying a base method's docstring to an
override that has none. chromadb asks for no runtime checking (`check_at_runtime`), which this
would skip too; tests/test_lean_imports.py fails if an upgrade starts to.

bm25s imports scipy.sparse when it can, for one thing: building the score matrix with
`csc_backend="scipy"`. It supports running without scipy (its numpy backend builds the same
arrays, at the same speed: measured on 8,615 chunks), and qabot builds with that backend by
name (rag/retrieve.py), so scipy is not imported at all.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Iterator
from typing import Any

_LOCK = threading.RLock()  # the swaps are process-wide: one such import at a time
_NAMES = ("override", "overrides")


def _mark_only(method: Any = None, **_options: Any) -> Any:
    """A stand-in for `@override` / `@override(...)` that marks the method and checks nothing."""
    if method is None:  # used with arguments: @override(check_signature=False)
        return _mark_only
    method.__override__ = True  # what EnforceOverrides checks for
    return method


@contextlib.contextmanager
def override_checks_skipped() -> Iterator[None]:
    """Within this block, `@override` of the `overrides` package marks methods without checking them."""
    try:
        import overrides
    except ImportError:  # a chromadb that no longer needs it: nothing to skip
        yield
        return
    with _LOCK:
        real = {name: getattr(overrides, name, None) for name in _NAMES}
        if not all(callable(f) for f in real.values()):
            yield  # not the API this was written for (overrides 7.x): leave it alone
            return
        for name in _NAMES:
            setattr(overrides, name, _mark_only)
        try:
            yield
        finally:
            for name, f in real.items():
                setattr(overrides, name, f)


def import_bm25s():  # -> the bm25s module
    """bm25s, imported (the first time) without scipy: qabot builds its matrices with numpy.

    bm25s imports scipy.sparse inside `try: ... except ImportError` and then runs without it; a
    `None` in `sys.modules` is Python's documented way to make that one import fail. It is
    there only while bm25s is imported, and not at all when scipy.sparse is already loaded.
    """
    if "bm25s" in sys.modules:
        return sys.modules["bm25s"]
    with _LOCK:
        blocked = "scipy.sparse" not in sys.modules
        if blocked:
            sys.modules["scipy.sparse"] = None  # type: ignore[assignment]
        try:
            import bm25s
        finally:
            if blocked and sys.modules.get("scipy.sparse", 0) is None:
                del sys.modules["scipy.sparse"]
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
    return bm25s
