"""PublishGuard: fails task starts fast while the broker looks down or stuck.

A publish to a broker that accepts TCP but never answers can hold a thread for seconds. While one
publish is overdue, or for a short cool-down after one failed, new starts are refused at once with
QueueUnavailable (503 at the gateway) instead of piling up behind it. A publish that succeeded only
after its deadline is reported as overdue: the gateway has already told the user it failed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tserver.errors import PublishOverdue, QueueUnavailable


class PublishGuard:
    """Tracks publishes in flight; refuses new ones while the broker looks unhealthy."""

    def __init__(self, deadline: float, cooldown: float = 2.0) -> None:
        self.deadline = deadline
        self.cooldown = cooldown
        self._lock = threading.Lock()
        self._inflight: dict[int, float] = {}
        self._ids = itertools.count()
        self._down_until = 0.0

    @contextmanager
    def publishing(self) -> Iterator[None]:
        """Wrap one publish: raises QueueUnavailable before it if the broker looks unhealthy,
        PublishOverdue after it if it took longer than the deadline."""
        now = time.monotonic()
        with self._lock:
            stuck = any(now - started > self.deadline for started in self._inflight.values())
            if stuck or now < self._down_until:
                raise QueueUnavailable("the task queue is not answering")
            key = next(self._ids)
            self._inflight[key] = now
        failed = True
        try:
            yield
            failed = False
        finally:
            end = time.monotonic()
            with self._lock:
                del self._inflight[key]
                overdue = end - now > self.deadline
                if failed or overdue:
                    self._down_until = end + self.cooldown
        if overdue:
            raise PublishOverdue(f"the broker confirmed after {end - now:.1f} s, past the {self.deadline:g} s deadline")
