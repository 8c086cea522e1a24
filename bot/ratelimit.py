"""Per-user sliding-window rate limit for questions."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class Verdict:
    """Whether a question may go ahead; if not, when to retry and whether to say so."""

    allowed: bool
    retry_after: float = 0.0
    warn: bool = False  # first refusal in this window: tell the user once, then stay quiet


class RateLimiter:
    """At most `limit` questions per user per `period` seconds; `limit` 0 turns it off."""

    def __init__(self, limit: int, period: float = 60.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.period = period
        self._clock = clock
        self._hits: dict[Hashable, deque[float]] = {}
        self._warned: dict[Hashable, float] = {}  # user -> end of the window they were warned in
        self._calls = 0

    def check(self, key: Hashable) -> Verdict:
        """Count one question for `key` if allowed."""
        if self.limit <= 0:
            return Verdict(True)
        now = self._clock()
        self._calls += 1
        if self._calls % 1024 == 0:
            self._forget_idle(now)
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.period:
            hits.popleft()
        if len(hits) < self.limit:
            hits.append(now)
            self._warned.pop(key, None)
            return Verdict(True)
        free_at = hits[0] + self.period
        warn = self._warned.get(key, 0.0) < free_at
        self._warned[key] = free_at
        return Verdict(False, retry_after=max(0.0, free_at - now), warn=warn)

    def _forget_idle(self, now: float) -> None:
        """Drop users with no recent questions so memory stays bounded."""
        for key in [k for k, hits in self._hits.items() if not hits or hits[-1] <= now - self.period]:
            del self._hits[key]
            self._warned.pop(key, None)
