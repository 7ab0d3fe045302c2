"""How the worker records a task's state: the store, the worker's host name, finishing a task (its
write retried while the store is unavailable), looking for a cancellation, and progress reports
(with the demo pace). Shared by whole calculations (tasks.py) and split ones (chunks.py)."""

from __future__ import annotations

import logging
import socket
import time

from state.backends import open_store
from state.errors import StorageError
from state.records import MAX_HOSTS, REVOKED, TaskState, utcnow
from worker import leibniz, metrics
from worker.app import settings, state_settings

log = logging.getLogger(__name__)

store = open_store(state_settings)
#: This worker's host name, recorded in the tasks (and chunks) it computes.
HOST = socket.gethostname()

# Progress shown while running stays below 100: 100 means the digits are proven (SUCCESS).
RUNNING_CEILING = 99.9
# Progress is written after every chunk (each at most 1% of the work), but not in a task's first
# such interval and not more often than this: replacing a state file costs 0.2-1.3 ms on our
# machines' ext4 (its auto_da_alloc flush), and a hundred of them would triple the time of a 20 ms
# task. Tasks longer than about a second still get a write at every 1%.
MIN_WRITE_INTERVAL = 0.01
# A cancellation takes effect within this (plus the kernel call under way, well under a second).
_CANCEL_POLL_INTERVAL = 0.005
# How often the demo pace writes progress while it stretches a task.
_PACE_TICK = 0.1
# A finished result is kept in memory and its write retried in place this long while the store is
# unavailable (after that, Celery retries the task).
_FINAL_WRITE_PATIENCE = 60.0


def with_host(state: TaskState) -> TaskState:
    """`state` with this worker's host among its hosts."""
    if HOST in state.hosts or len(state.hosts) >= MAX_HOSTS:
        return state
    return state.evolve(hosts=(*state.hosts, HOST))


class CancelPoll:
    """should_stop callback: looks for the task's cancellation request, at most every few ms (a
    short task has a chunk every few microseconds, and each look is a stat() of the folder)."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.next_look = 0.0

    def __call__(self) -> bool:
        now = time.monotonic()
        if now < self.next_look:
            return False
        self.next_look = now + _CANCEL_POLL_INTERVAL
        return cancel_requested(self.task_id)


def cancel_requested(task_id: str) -> bool:
    """Whether the task's cancellation was requested; a store that cannot answer now counts as no
    (the computation goes on; the next look, a few ms later, asks again)."""
    try:
        return store.cancel_requested(task_id)
    except StorageError as exc:
        log.warning("task %s: cannot look for a cancellation: %s", task_id, exc)
        return False


class ProgressRecorder:
    """on_progress callback: writes progress, partial result and heartbeat; applies the demo pace."""

    def __init__(self, state: TaskState) -> None:
        self.state = state
        self.started = time.monotonic()
        self.pace = settings.DEMO_MIN_SECONDS

    def __call__(self, p: leibniz.Progress) -> None:
        if not self.pace and time.monotonic() - self.started < MIN_WRITE_INTERVAL:
            # Nobody polls faster than this: a task that ends this soon goes from PROGRESS
            # straight to its result, saving a state-file replacement (~1.3 ms on this VM's ext4).
            return
        self._record(p.fraction * 100, round(p.partial, self.state.decimal), p.terms)
        if self.pace:
            # Hold each step until its share of the demo's minimum duration has passed.
            self._sleep_until(self.started + p.fraction * self.pace)

    def stretch(self) -> None:
        """Demo pace: after the digits are proven, let progress creep on until the minimum duration."""
        end = self.started + self.pace
        start_progress, start_time = self.state.progress, time.monotonic()
        while (now := time.monotonic()) < end:
            share = (now - start_time) / max(end - start_time, 1e-9)
            percent = start_progress + (RUNNING_CEILING - start_progress) * share
            self._record(percent, self.state.result, self.state.terms)
            self._sleep_until(min(end, now + _PACE_TICK))

    def _record(self, percent: float, partial: float | None, terms: int) -> None:
        progress = max(self.state.progress, min(RUNNING_CEILING, round(percent, 2)))
        self.state = self.state.evolve(progress=progress, result=partial, terms=terms, heartbeat=utcnow())
        try:
            store.write(self.state)
        except StorageError as exc:
            log.warning("%s", exc)

    def _sleep_until(self, deadline: float) -> None:
        # Sliced, so that a cancellation still takes effect promptly.
        while (left := deadline - time.monotonic()) > 0:
            if cancel_requested(self.state.id):
                raise leibniz.Cancelled("cancelled while running")
            time.sleep(min(left, _PACE_TICK))


def finish(state: TaskState, status: str, **changes: object) -> None:
    """Record the task's end (retried in place while the store is unavailable, then StorageError)."""
    final = state.evolve(status=status, stoptime=utcnow(), heartbeat=None, **changes)
    deadline, delay = time.monotonic() + _FINAL_WRITE_PATIENCE, 0.25
    while True:
        try:
            store.write(final)
            break
        except StorageError as exc:
            if time.monotonic() + delay > deadline:
                raise
            log.warning("task %s: cannot record %s yet (%s); retrying in %.2g s", state.id, status, exc, delay)
            time.sleep(delay)
            delay = min(2 * delay, 5.0)
    if status == REVOKED:
        store.clear_cancel(state.id)
    metrics.note_outcome(status)
    log.info("task %s %s", state.id, status)
