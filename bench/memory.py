"""Peak resident memory of every product process, sampled in the background during the load runs.

A thread polls psutil every 100 ms: cheap (a few /proc reads) and frequent enough to catch the
peak of a listing that holds every task in memory for a second. Peaks are kept per phase (the
benchmark running) and per role, so the report can say where a peak happened. Several products
can be watched at once (variants side by side): their roles are then named "tserver (redis)".
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
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
        self._stacks: dict[str, Stack] = {}
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

    def attach(self, stacks: Stack | Mapping[str, Stack] | None) -> None:
        """Sample these stacks' processes from now on (None: nothing). Stacks given by label have their
        roles suffixed with it ("tserver (redis)"); one stack given alone keeps the plain roles."""
        if stacks is None:
            stacks = {}
        elif isinstance(stacks, Stack):
            stacks = {"": stacks}
        with self._lock:
            self._stacks, self._procs, self._found_at = dict(stacks), {}, 0.0

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
        """RSS of each process of the attached stacks right now, in MB."""
        with self._lock:
            stacks = dict(self._stacks)
        return rss_mb(_labelled(stacks))

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
            except Exception:
                log.exception("memory sample failed")

    def _sample(self) -> None:
        with self._lock:
            stacks, phase = dict(self._stacks), self._phase
            if not stacks or phase is None:
                return
            if time.monotonic() - self._found_at > _REDISCOVER:
                self._procs, self._found_at = _labelled(stacks), time.monotonic()
            procs = dict(self._procs)
        sizes = rss_mb(procs)
        with self._lock:
            if self._phase != phase:
                return
            peaks = self.peaks[phase]
            for role, mb in sizes.items():
                peaks[role] = max(peaks.get(role, 0.0), mb)
            self.samples += 1


def _labelled(stacks: Mapping[str, Stack]) -> dict[str, psutil.Process]:
    """Every process of every stack, its role suffixed with the stack's label (if any)."""
    found: dict[str, psutil.Process] = {}
    for label, stack in stacks.items():
        for role, proc in processes(stack).items():
            found[f"{role} ({label})" if label else role] = proc
    return found
