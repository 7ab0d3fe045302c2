"""The calc_pi task: sums the Leibniz series and records its progress in the task's state file."""

from __future__ import annotations

import logging

from worker import leibniz
from worker.app import app, settings
from worker.errors import StorageError, UnknownTask
from worker.state import FAILURE, PROGRESS, SUCCESS, WAITING, StateStore, TaskState, check_task_id, utcnow

log = logging.getLogger(__name__)

store = StateStore(settings.STATE_DIR)

# Progress shown while running stays below 100: 100 means the digits are proven (SUCCESS).
_RUNNING_CEILING = 99.9


@app.task(name="worker.calc_pi")
def calc_pi(task_id: str, decimal: int) -> None:
    """Compute pi to `decimal` places, writing progress to the state file as it goes."""
    try:
        check_task_id(task_id)
    except UnknownTask:
        log.error("dropping a message with a malformed task id %.80r", task_id)
        return
    state = _load_or_recreate(task_id, decimal)
    if state is None:
        return
    if state.is_final:
        # A redelivery of a task that already ended (its worker died before the ack): nothing to do.
        log.info("task %s already %s; skipping redelivery", task_id, state.status)
        return
    attempts = state.attempts + 1
    if attempts > settings.TASK_MAX_ATTEMPTS:
        _finish(state.evolve(attempts=attempts - 1), FAILURE,
                error=f"gave up: the worker died {attempts - 1} times while computing this task")
        return
    state = state.evolve(status=PROGRESS, starttime=state.starttime or utcnow(), attempts=attempts)
    store.write(state)
    recorder = _ProgressRecorder(state)
    try:
        result = leibniz.compute_pi(state.decimal, on_progress=recorder)
    except leibniz.NotConverged as exc:
        _finish(recorder.state, FAILURE, error=str(exc))
        return
    except (ValueError, TypeError) as exc:
        _finish(recorder.state, FAILURE, error=f"invalid task: {exc}")
        return
    _finish(recorder.state, SUCCESS, result=result.value, digits=result.digits, terms=result.terms, progress=100.0)


class _ProgressRecorder:
    """on_progress callback: writes the partial result; a failed write does not stop the sum."""

    def __init__(self, state: TaskState) -> None:
        self.state = state

    def __call__(self, p: leibniz.Progress) -> None:
        progress = max(self.state.progress, min(_RUNNING_CEILING, round(p.fraction * 100, 2)))
        self.state = self.state.evolve(progress=progress, result=round(p.partial, self.state.decimal), terms=p.terms)
        try:
            store.write(self.state)
        except StorageError as exc:
            log.warning("%s", exc)


def _load_or_recreate(task_id: str, decimal: object) -> TaskState | None:
    try:
        return store.read(task_id)
    except UnknownTask:
        if type(decimal) is not int or not 1 <= decimal <= settings.MAX_DECIMAL:
            log.error("dropping task %s: no state file and an invalid decimal %.20r", task_id, decimal)
            return None
        # The Thrift server writes the file before publishing; if it is gone (removed by hand or by
        # retention), the message still carries everything needed to run the task.
        log.warning("task %s has no state file; recreating it", task_id)
        return TaskState(id=task_id, status=WAITING, decimal=decimal, pushqtime=utcnow())


def _finish(state: TaskState, status: str, **changes: object) -> None:
    store.write(state.evolve(status=status, stoptime=utcnow(), **changes))
    log.info("task %s %s", state.id, status)
