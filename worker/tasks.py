"""The calc_pi task: sums the Leibniz series and records its progress in the task's state file."""

from __future__ import annotations

import logging
import time

from celery import Task

from state.backends import open_store
from state.errors import StorageError, UnknownTask
from state.records import FAILURE, PROGRESS, REVOKED, SUCCESS, WAITING, TaskState, check_task_id, utcnow
from worker import leibniz
from worker.app import app, settings, state_settings

log = logging.getLogger(__name__)

store = open_store(state_settings)

# Progress shown while running stays below 100: 100 means the digits are proven (SUCCESS).
_RUNNING_CEILING = 99.9
# Progress is written after every chunk (each at most 1% of the work), but not in a task's first
# such interval and not more often than this: replacing a state file costs 0.2-1.3 ms on our
# machines' ext4 (its auto_da_alloc flush), and a hundred of them would triple the time of a 20 ms
# task. Tasks longer than about a second still get a write at every 1%.
_MIN_WRITE_INTERVAL = 0.01
# A cancellation takes effect within this (plus the chunk under way, well under a second).
_CANCEL_POLL_INTERVAL = 0.005
# How often the demo pace writes progress while it stretches a task.
_PACE_TICK = 0.1


# A store that cannot be written (a folder full or read-only, Redis gone) is retried rather than
# failing at once: the task cannot even record a FAILURE there, and the trouble often passes. A
# finished result is kept in memory and its write retried in place for a while; after that (or
# when the task could not even start), Celery retries the task with a growing delay.
_FINAL_WRITE_PATIENCE = 60.0
_STORAGE_RETRIES = 20
_STORAGE_RETRY_MAX_DELAY = 30


@app.task(name="worker.calc_pi", bind=True)  # type: ignore[untyped-decorator]  # Celery has no type hints
def calc_pi(self: Task, task_id: str, decimal: int) -> None:
    """Compute pi to `decimal` places, writing progress to the state file as it goes."""
    try:
        _run(task_id, decimal)
    except StorageError as exc:
        delay = min(2 ** self.request.retries, _STORAGE_RETRY_MAX_DELAY)
        log.error("task %s: %s; retrying in %d s", task_id, exc, delay)
        raise self.retry(exc=exc, countdown=delay, max_retries=_STORAGE_RETRIES) from None


def _run(task_id: str, decimal: int) -> None:
    try:
        check_task_id(task_id)
    except UnknownTask:
        log.error("dropping a message with a malformed task id %.80r", task_id)
        return
    state = _load_or_recreate(task_id, decimal)
    if state is None:
        return
    if state.is_final:
        # A redelivery of a task that already ended (its worker died before the ack), or one
        # cancelled while it waited: nothing to do.
        log.info("task %s already %s; nothing to do", task_id, state.status)
        store.clear_cancel(task_id)
        return
    if store.cancel_requested(task_id):
        _finish(state, REVOKED, error="cancelled before it started")
        return
    attempts = state.attempts + 1
    if attempts > settings.TASK_MAX_ATTEMPTS:
        _finish(state.evolve(attempts=attempts - 1), FAILURE,
                error=f"gave up: the worker died {attempts - 1} times while computing this task")
        return
    now = utcnow()
    state = state.evolve(status=PROGRESS, starttime=state.starttime or now, heartbeat=now, attempts=attempts)
    store.write(state)
    recorder = _ProgressRecorder(state)
    try:
        # With the demo pace on, every chunk's report paces the task (its sleeps space the writes).
        interval = 0.0 if settings.DEMO_MIN_SECONDS else _MIN_WRITE_INTERVAL
        result = leibniz.compute_pi(state.decimal, on_progress=recorder, min_report_interval=interval,
                                    should_stop=_CancelPoll(task_id))
        recorder.stretch()
    except leibniz.Cancelled:
        _finish(recorder.state, REVOKED, error="cancelled while running")
        return
    except leibniz.NotConverged as exc:
        _finish(recorder.state, FAILURE, error=str(exc))
        return
    except (ValueError, TypeError) as exc:
        _finish(recorder.state, FAILURE, error=f"invalid task: {exc}")
        return
    _finish(recorder.state, SUCCESS, result=result.value, digits=result.digits, terms=result.terms, progress=100.0)


class _CancelPoll:
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
        return _cancel_requested(self.task_id)


def _cancel_requested(task_id: str) -> bool:
    """Whether the task's cancellation was requested; a store that cannot answer now counts as no
    (the computation goes on; the next look, a few ms later, asks again)."""
    try:
        return store.cancel_requested(task_id)
    except StorageError as exc:
        log.warning("task %s: cannot look for a cancellation: %s", task_id, exc)
        return False


class _ProgressRecorder:
    """on_progress callback: writes progress, partial result and heartbeat; applies the demo pace."""

    def __init__(self, state: TaskState) -> None:
        self.state = state
        self.started = time.monotonic()
        self.pace = settings.DEMO_MIN_SECONDS

    def __call__(self, p: leibniz.Progress) -> None:
        if not self.pace and time.monotonic() - self.started < _MIN_WRITE_INTERVAL:
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
            self._record(start_progress + (_RUNNING_CEILING - start_progress) * share, self.state.result, self.state.terms)
            self._sleep_until(min(end, now + _PACE_TICK))

    def _record(self, percent: float, partial: float | None, terms: int) -> None:
        progress = max(self.state.progress, min(_RUNNING_CEILING, round(percent, 2)))
        self.state = self.state.evolve(progress=progress, result=partial, terms=terms, heartbeat=utcnow())
        try:
            store.write(self.state)
        except StorageError as exc:
            log.warning("%s", exc)

    def _sleep_until(self, deadline: float) -> None:
        # Sliced, so that a cancellation still takes effect promptly.
        while (left := deadline - time.monotonic()) > 0:
            if _cancel_requested(self.state.id):
                raise leibniz.Cancelled("cancelled while running")
            time.sleep(min(left, _PACE_TICK))


def _load_or_recreate(task_id: str, decimal: object) -> TaskState | None:
    try:
        return store.read(task_id)
    except UnknownTask:
        if store.cancel_requested(task_id):
            # The Thrift server gave up on this publish and told its client so: never run it.
            log.info("dropping task %s: it was not accepted (its publish was not confirmed in time)", task_id)
            store.clear_cancel(task_id)
            return None
        if type(decimal) is not int or not 1 <= decimal <= settings.MAX_DECIMAL:
            log.error("dropping task %s: no state file and an invalid decimal %.20r", task_id, decimal)
            return None
        # The Thrift server writes the file before publishing; if it is gone (removed by hand or by
        # retention), the message still carries everything needed to run the task.
        log.warning("task %s has no state file; recreating it", task_id)
        return TaskState(id=task_id, status=WAITING, decimal=decimal, pushqtime=utcnow())


def _finish(state: TaskState, status: str, **changes: object) -> None:
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
    log.info("task %s %s", state.id, status)
