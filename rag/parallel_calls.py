"""Single-threaded onnxruntime calls, run a few at once when cores are free.

The int8 models (the sentence ranker, the span reader) run one text per call on one thread each, so a
text's scores never depend on what else was in its call. A question brings several such calls (~20
sentences to rank; a list question's passages to read); `ParallelCalls` runs up to `calls` of them at
once. Each call is the same call it was alone, so results are bit-identical to running them one after
the other; they only come sooner when a core is free. The calling thread always works, so answers
computed at once (the Discord bot) never wait for a pool thread: the helpers only take calls nobody
has started.
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: The offline answerer embeds ~20 new sentences a question at 20k chunks, in ~7 calls of one thread
#: each (its whole time at scale). Up to this many of those calls run at once, one per free core, when
#: each call has one thread (QABOT_TORCH_THREADS=1): calls share nothing, so a busy machine gets no
#: spinning threads, only the same work in two pieces.
MAX_CALLS = 2


def calls_at_once(threads: int) -> int:
    """How many single-thread calls run at once: one per usable core, up to MAX_CALLS, and one when the
    user gave each call several threads (or let onnxruntime choose: 0)."""
    if threads != 1:
        return 1
    return max(1, min(MAX_CALLS, len(os.sched_getaffinity(0))))


class ParallelCalls:
    """Runs `fn` on each item: on the calling thread, helped by up to `calls` - 1 pool threads."""

    def __init__(self, calls: int, name: str) -> None:
        self.calls = max(1, calls)
        self._name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        results: list[R | None] = [None] * len(items)
        tickets = itertools.count()  # next() on it is atomic: each item is taken once

        def work() -> None:
            while (k := next(tickets)) < len(items):
                results[k] = fn(items[k])

        helpers = [self._pool().submit(work) for _ in range(min(self.calls, len(items)) - 1)]
        try:
            work()
        finally:
            for helper in helpers:
                helper.result()
        return results  # type: ignore[return-value]  # every slot was filled

    def _pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.calls - 1, thread_name_prefix=self._name)
            return self._executor
