"""Import torch and hide it from spaCy's import without the two racing on different threads.

thinc (under spaCy) imports torch whenever it is installed, although `en_core_web_sm` has no torch
layers: hiding torch during spaCy's import measured 2.85 s / 151 MB instead of 6.39 s / 331 MB. The
hiding is a `None` in `sys.modules`, which makes every `import torch` fail while it lasts, so a
thread that imports torch meanwhile (an embedding model exported on first use) would fail. Both
sides therefore take one lock: spaCy's import through `hidden()`, torch's through `import_torch()`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

_LOCK = threading.Lock()


@contextmanager
def hidden() -> Iterator[None]:
    """Within the block, `import torch` fails as if torch were not installed (unless already imported)."""
    with _LOCK:
        hide = "torch" not in sys.modules
        if hide:
            sys.modules["torch"] = None  # type: ignore[assignment]
        try:
            yield
        finally:
            if hide and sys.modules.get("torch", 0) is None:
                del sys.modules["torch"]


def import_torch() -> ModuleType:
    """`import torch`, after any spaCy import that hides it has finished."""
    with _LOCK:
        import torch

    return torch
