"""Import chromadb, bm25s and spaCy without what they load for code qabot never runs.

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

thinc (under spaCy) imports torch whenever it is installed, although `en_core_web_sm` has no torch
layers: hiding torch during spaCy's import measured 2.85 s / 151 MB instead of 6.39 s / 331 MB.
Hiding a module is process-wide (every `import torch` fails while it lasts), so one lock covers
both the hiding and qabot's own torch imports (`import_torch`): the chat loads spaCy on a
background thread while an embedding model may be exported, with torch, on another.
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


@contextlib.contextmanager
def hidden(module: str) -> Iterator[None]:
    """Within the block, `import <module>` fails as if it were not installed (unless already imported).

    A `None` in `sys.modules` is Python's documented way to make an import fail.
    """
    with _LOCK:
        hide = module not in sys.modules
        if hide:
            sys.modules[module] = None  # type: ignore[assignment]
        try:
            yield
        finally:
            if hide and sys.modules.get(module, 0) is None:
                del sys.modules[module]


def import_torch():  # -> the torch module
    """`import torch`, after any import that hides it (spaCy's, see `hidden`) has finished."""
    with _LOCK:
        import torch

    return torch


def import_bm25s():  # -> the bm25s module
    """bm25s, imported (the first time) without scipy: qabot builds its matrices with numpy.

    bm25s imports scipy.sparse inside `try: ... except ImportError` and then runs without it; a
    `None` in `sys.modules` is Python's documented way to make that one import fail. It is
    there only while bm25s is imported, and not at all when scipy.sparse is already loaded.
    """
    if "bm25s" in sys.modules:
        return sys.modules["bm25s"]
    with hidden("scipy.sparse"):
        import bm25s
    logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets itself to DEBUG on import
    return bm25s
