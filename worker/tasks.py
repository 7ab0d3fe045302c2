"""The calc_pi task: sums the Leibniz series and records its progress in the task's state file."""

from __future__ import annotations

import logging
import time

from celery import Task

from state.errors import StorageError, UnknownTask
from state.records import FAILURE, PROGRESS, REVOKED, SUCCESS, WAITING, TaskState, check_task_id, utcnow
from worker import chunks, leibniz, metrics, split
from worker.app import app, settings
from worker.recording import MIN_WRITE_INTERVAL, CancelPoll, ProgressRecorder, finish, store, with_host

log = logging.getLogger(__name__)

# A store that cannot be written (a folder full or read-only, Redis gone) is retried rather than
# failing at once: the task cannot even record a FAILURE there, and the trouble often passes. A
# finished result's write is retried in place for a while (recording.finish); after that (or when
# the task could not even start), Celery retries the task with a growing delay.
_STORAGE_RETRIES = 20
_STORAGE_RETRY_MAX_DELAY = 30


@app.task(name="worker.calc_pi", bind=True)  # type: ignore[untyped-decorator]  # Celery has no type hints
def calc_pi(self: Task, task_id: str, decimal: int) -> None:
    """Compute pi to `decimal` places, writing progress to the state file as it goes."""
    try:
        _run(task_id, decimal)
    except StorageError as exc:
        delay = min(2**self.request.retries, _STORAGE_RETRY_MAX_DELAY)
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
        metrics.note_outcome(state.status)
        store.clear_cancel(task_id)
        return
    if store.cancel_requested(task_id):
        finish(state, REVOKED, error="cancelled before it started")
        return
    attempts = state.attempts + 1
    if attempts > settings.TASK_MAX_ATTEMPTS:
        finish(
            state.evolve(attempts=attempts - 1),
            FAILURE,
            error=f"gave up: the worker died {attempts - 1} times while computing this task",
        )
        return
    if state.chunks is not None:
        # A redelivery of a split task whose chunks were already sent: they carry on without it.
        log.info("task %s: its %d chunks are out; nothing to do", task_id, state.chunks.total)
        return
    now = utcnow()
    state = state.evolve(status=PROGRESS, starttime=state.starttime or now, heartbeat=now, attempts=attempts)
    plan = split.plan(state.decimal, settings.SPLIT_MIN_TERMS, settings.SPLIT_CHUNK_TERMS, settings.SPLIT_MAX_CHUNKS)
    if plan is not None:
        chunks.launch(state, plan)
        return
    state = with_host(state)
    store.write(state)
    recorder = ProgressRecorder(state)
    started = time.monotonic()
    try:
        # With the demo pace on, every chunk's report paces the task (its sleeps space the writes).
        interval = 0.0 if settings.DEMO_MIN_SECONDS else MIN_WRITE_INTERVAL
        result = leibniz.compute_pi(
            state.decimal, on_progress=recorder, min_report_interval=interval, should_stop=CancelPoll(task_id)
        )
        metrics.terms_computed(result.terms, time.monotonic() - started)
        recorder.stretch()
    except leibniz.Cancelled:
        # The terms recorded in its state (the last progress written), as GET /task shows them.
        metrics.terms_computed(recorder.state.terms, time.monotonic() - started)
        finish(recorder.state, REVOKED, error="cancelled while running")
        return
    except leibniz.NotConverged as exc:
        finish(recorder.state, FAILURE, error=str(exc))
        return
    except (ValueError, TypeError) as exc:
        finish(recorder.state, FAILURE, error=f"invalid task: {exc}")
        return
    finish(recorder.state, SUCCESS, result=result.value, digits=result.digits, terms=result.terms, progress=100.0)


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
