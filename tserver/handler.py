"""RPCceleryHandler: the Thrift service's methods, named as in rpcinterface.thrift.

Every argument is validated here; worker errors become the IDL's exceptions. No sockets: the
server wiring lives in tserver/server.py, so this class is tested directly.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from pathlib import Path

from RPC.ttypes import BadArgument, BadDecimal, BadTask, HostStatus, TaskFinished, TaskPage, Unavailable, calcResult
from tserver.hostinfo import host_status
from tserver.index import TaskIndex
from tserver.publish_guard import PublishGuard, PublishOverdue
from worker.errors import QueueUnavailable, StorageError, UnknownTask
from worker.state import PROGRESS, REVOKED, STATUSES, WAITING, StateStore, TaskState, utcnow

log = logging.getLogger(__name__)

MIN_DECIMAL = 1
MAX_PAGE = 1000
# How long cancelTask waits for the worker of a running task to record REVOKED itself.
CANCEL_WAIT = 2.0

Enqueue = Callable[[str, int], Awaitable[None]]


class RPCceleryHandler:
    """Implements RPCcelery.Iface on top of the state store, its index and the task queue."""

    def __init__(self, store: StateStore, enqueue: Enqueue, max_decimal: int, *, stalled_after: float = 30.0,
                 index: TaskIndex | None = None, guard: PublishGuard | None = None) -> None:
        self.store = store
        self.enqueue = enqueue
        self.max_decimal = max_decimal
        self.stalled_after = stalled_after
        self.index = index if index is not None else TaskIndex(store)
        self.guard = guard if guard is not None else PublishGuard(deadline=3.5)

    # The two starts are coroutines: the server runs them on its event loop, so that a start that
    # waits for RabbitMQ's confirm holds no thread (see tserver/async_processor.py).

    async def startCalcPi(self, decimal: int) -> str:
        """Queue a calculation; the new task's id."""
        return (await self.queueCalcPi(decimal)).id

    async def queueCalcPi(self, decimal: int) -> calcResult:
        """Queue a calculation; the new task's record."""
        self._check_decimal(decimal)
        state = TaskState(id=str(uuid.uuid4()), status=WAITING, decimal=decimal, pushqtime=utcnow())
        # The file exists before the message does, so the worker always finds it.
        try:
            self.store.write(state)
        except StorageError as exc:
            raise Unavailable(message=str(exc)) from exc
        try:
            with self.guard.publishing():
                await self.enqueue(state.id, decimal)
        except PublishOverdue as exc:
            # The message is in the queue, but the caller has been told it failed: the request
            # makes the worker drop (or promptly stop) it, and the record says why.
            self.store.request_cancel(state.id)
            self.store.write(state.evolve(status=REVOKED, stoptime=utcnow(), error=f"not accepted: {exc}"))
            raise Unavailable(message="the task queue (RabbitMQ) is unavailable; try again shortly") from exc
        except QueueUnavailable as exc:
            # Not accepted, and most likely never published: no WAITING file is left that nothing
            # would ever pick up. Should the message reach the queue after all, the request tells
            # the worker to drop it.
            self.store.request_cancel(state.id)
            self.store.delete_state(state.id)
            raise Unavailable(message="the task queue (RabbitMQ) is unavailable; try again shortly") from exc
        self._remember(state)
        return self.to_calc_result(state)

    def getTaskStatus(self, uuid: str) -> calcResult:  # noqa: A002 - the IDL's argument name
        """The state of one task."""
        return self.to_calc_result(self._read(uuid))

    def cancelTask(self, uuid: str) -> calcResult:  # noqa: A002 - the IDL's argument name
        """Cancel a waiting or running task: REVOKED with a stop time."""
        state = self._read(uuid)
        self._check_not_final(state)
        try:
            # First the request the worker polls, then (for a task no worker has yet) the state.
            self.store.request_cancel(state.id)
            if state.status == WAITING:
                state = state.evolve(status=REVOKED, stoptime=utcnow(), error="cancelled before it started")
                self.store.write(state)
            else:
                state = self._await_revoked(state)
        except StorageError as exc:
            raise Unavailable(message=str(exc)) from exc
        self._remember(state)
        return self.to_calc_result(state)

    def listTasks(self) -> list[calcResult]:
        """Every task, newest first."""
        try:
            states, _ = self.index.page(0, max(len(self.index), 1))
        except StorageError as exc:
            raise Unavailable(message=str(exc)) from exc
        return [self.to_calc_result(s) for s in states]

    def listTaskPage(self, offset: int, limit: int, status: str) -> TaskPage:
        """One page of tasks, newest first, optionally only those with one status."""
        offset = 0 if offset is None else offset
        limit = 100 if limit is None else limit
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise BadArgument(message=f"offset must be >= 0 and limit from 1 to {MAX_PAGE}")
        if status and status not in STATUSES:
            raise BadArgument(message=f"status must be one of {', '.join(STATUSES)}")
        try:
            states, total = self.index.page(offset, limit, status or "")
        except StorageError as exc:
            raise Unavailable(message=str(exc)) from exc
        return TaskPage(tasks=[self.to_calc_result(s) for s in states], total=total)

    def getHostStatus(self) -> HostStatus:
        """The compute host's CPU, memory, disk and address."""
        try:
            return host_status(Path(self.store.folder))
        except OSError as exc:
            raise Unavailable(message=f"cannot read the host's state: {exc}") from exc

    def to_calc_result(self, state: TaskState) -> calcResult:
        """The IDL struct for a task's state."""
        return calcResult(
            id=state.id, status=state.status, pushqtime=state.pushqtime, starttime=state.starttime,
            stoptime=state.stoptime, result=state.result, decimal=state.decimal, progress=state.progress,
            digits=state.digits, error=state.error, terms=state.terms, heartbeat=state.heartbeat,
            attempts=state.attempts, stalled=self._stalled(state),
        )

    def _stalled(self, state: TaskState) -> bool:
        if state.status != PROGRESS or state.heartbeat is None:
            return False
        age = datetime.now(timezone.utc) - datetime.fromisoformat(state.heartbeat)
        return age.total_seconds() > self.stalled_after

    def _remember(self, state: TaskState) -> None:
        # The task's file is written and the answer is true: an index that cannot take it now
        # (its temporary folder full, say) must not turn it into an error; the rescan adds it.
        try:
            self.index.add(state)
        except StorageError as exc:
            log.warning("task %s not indexed yet: %s", state.id, exc)

    def _read(self, task_id: str) -> TaskState:
        try:
            return self.store.read(task_id)
        except UnknownTask as exc:
            raise BadTask(message=str(exc)) from None

    def _await_revoked(self, state: TaskState) -> TaskState:
        # The worker polls the request between chunks (a fraction of a second); wait for it to
        # record REVOKED itself, so that its own progress writes cannot overwrite ours.
        deadline = time.monotonic() + CANCEL_WAIT
        while time.monotonic() < deadline:
            time.sleep(0.01)
            state = self.store.read(state.id)
            if state.status == REVOKED:
                return state
            self._check_not_final(state)  # it finished first: too late to cancel
        if self._stalled(state) or state.status == WAITING:
            # No live worker holds it: record the cancellation; a redelivery will see the request.
            state = state.evolve(status=REVOKED, stoptime=utcnow(), error="cancelled (no worker was running it)")
            self.store.write(state)
            return state
        raise Unavailable(message="the worker did not confirm the cancellation in time; it will stop shortly")

    def _check_not_final(self, state: TaskState) -> None:
        if state.is_final:
            raise TaskFinished(message=f"task {state.id} has already ended: {state.status}", status=state.status)

    def _check_decimal(self, decimal: object) -> None:
        if type(decimal) is not int or not MIN_DECIMAL <= decimal <= self.max_decimal:
            raise BadDecimal(
                message=f"decimal must be an integer from {MIN_DECIMAL} to {self.max_decimal}",
                min_decimal=MIN_DECIMAL,
                max_decimal=self.max_decimal,
            )
