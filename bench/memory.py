"""Peak resident memory of every product process, sampled in the background during the load runs.

A thread polls psutil every 100 ms: cheap (a few /proc reads) and frequent enough to catch the
peak of a listing that holds every task in memory for a second. Peaks are kept per phase (the
benchmark running) and per role, so the report can say where a peak happened.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import psutil

from bench.stack import processes, rss_mb
from testing.stack import Stack

log = logging.getLogger(__name__)

_INTERVAL = 0.1
_REDISCOVER = 1.0  # seconds between looks for new processes (a restarted worker has new pool children)


class MemoryWatch:
    """Background sampler; `attach` a stack, enter `phase(name)` around each load run."""

    def __init__(self) -> None:
        self.peaks: dict[str, dict[str, float]] = {}  # phase -> role -> peak MB
        self.samples = 0
        self._stack: Stack | None = None
        self._phase: str | None = None
        self._procs: dict[str, psutil.Process] = {}
        self._found_at = 0.0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-watch", daemon=True)

    def __enter__(self) -> MemoryWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def attach(self, stack: Stack | None) -> None:
        """Sample this stack's processes from now on (None: sample nothing)."""
        with self._lock:
            self._stack, self._procs, self._found_at = stack, {}, 0.0

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Attribute the peaks seen inside the block to `name`."""
        with self._lock:
            self._phase = name
            self.peaks.setdefault(name, {})
        try:
            yield
        finally:
            self._sample()  # the state at the end of the run counts too
            with self._lock:
                self._phase = None

    def now(self) -> dict[str, float]:
        """RSS of each process of the attached stack right now, in MB."""
        with self._lock:
            stack = self._stack
        return rss_mb(processes(stack)) if stack is not None else {}

    def peak(self, *phases: str) -> dict[str, float]:
        """Highest RSS per role over the given phases (all phases if none given)."""
        out: dict[str, float] = {}
        for name in phases or tuple(self.peaks):
            for role, mb in self.peaks.get(name, {}).items():
                out[role] = max(out.get(role, 0.0), mb)
        return out

    def _run(self) -> None:
        while not self._stop.wait(_INTERVAL):
            try:
                self._sample()
            except Exception:  # noqa: BLE001 - a sampler must not die; the figure shows missing roles
                log.exception("memory sample failed")

    def _sample(self) -> None:
        with self._lock:
            stack, phase = self._stack, self._phase
            if stack is None or phase is None:
                return
            if time.monotonic() - self._found_at > _REDISCOVER:
                self._procs, self._found_at = processes(stack), time.monotonic()
            procs = dict(self._procs)
        sizes = rss_mb(procs)
        with self._lock:
            if self._phase != phase:
                return
            peaks = self.peaks[phase]
            for role, mb in sizes.items():
                peaks[role] = max(peaks.get(role, 0.0), mb)
            self.samples += 1
