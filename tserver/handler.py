"""RPCceleryHandler: the Thrift service's methods, named as in rpcinterface.thrift.

Every argument is validated here; store and broker errors become the IDL's exceptions. Every
method is a coroutine, so the server awaits it on its event loop (tserver/runtime/dispatch.py):
waiting for RabbitMQ's confirm or for the store holds no thread, and whatever would block (file
I/O, psutil, a DNS lookup) is handed to a thread by the store or here. No sockets: the wiring lives
in tserver/server.py, so this class is tested directly.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from RPC.constants import DEFAULT_PAGE, MAX_PAGE, MIN_DECIMAL, STATUSES
from RPC.ttypes import BadArgument, BadDecimal, BadTask, HostStatus, TaskFinished, TaskPage, Unavailable, calcResult
from state.errors import StorageError, UnknownTask
from state.interface import TaskCatalog
from state.records import PROGRESS, REVOKED, WAITING, TaskState, utcnow
from tserver.context import bind_task
from tserver.errors import PublishOverdue, QueueUnavailable
from tserver.hostinfo import host_status
from tserver.publish_guard import PublishGuard

log = logging.getLogger(__name__)

# How long cancelTask waits for the worker of a running task to record REVOKED itself, and how
# often it looks.
CANCEL_WAIT = 2.0
_CANCEL_POLL = 0.01
_QUEUE_DOWN = "the task queue (RabbitMQ) is unavailable; try again shortly"

Enqueue = Callable[[str, int], Awaitable[None]]


class RPCceleryHandler:
    """Implements RPCcelery.Iface (as coroutines) on top of the state store and the task queue."""

    def __init__(
        self,
        catalog: TaskCatalog,
        enqueue: Enqueue,
        max_decimal: int,
        *,
        stalled_after: float = 30.0,
        guard: PublishGuard | None = None,
        disk_path: str = "/",
    ) -> None:
        self.catalog = catalog
        self.enqueue = enqueue
        self.max_decimal = max_decimal
        self.stalled_after = stalled_after
        self.guard = guard if guard is not None else PublishGuard(deadline=3.5)
        self.disk_path = disk_path  # whose usage getHostStatus reports

    async def startCalcPi(self, decimal: int) -> str:
        """Queue a calculation; the new task's id."""
        return str((await self.queueCalcPi(decimal)).id)

    async def queueCalcPi(self, decimal: int) -> calcResult:
        """Queue a calculation; the new task's record."""
        self._check_decimal(decimal)
        state = TaskState(id=str(uuid.uuid4()), status=WAITING, decimal=decimal, pushqtime=utcnow())
        bind_task(state.id)
        # The record exists before the message does, so the worker always finds it.
        with _storage_errors():
            await self.catalog.write(state)
        try:
            with self.guard.publishing():
                await self.enqueue(state.id, decimal)
        except PublishOverdue as exc:
            # The message is in the queue, but the caller has been told it failed: the request
            # makes the worker drop (or promptly stop) it, and the record says why.
            log.warning("task %s not accepted: %s", state.id, exc)
            with _storage_errors():
                await self.catalog.request_cancel(state.id)
                await self.catalog.write(state.evolve(status=REVOKED, stoptime=utcnow(), error=f"not accepted: {exc}"))
            raise Unavailable(message=_QUEUE_DOWN) from exc
        except QueueUnavailable as exc:
            # Not accepted, and most likely never published: no WAITING record is left that nothing
            # would ever pick up. Should the message reach the queue after all, the request tells
            # the worker to drop it.
            log.warning("task %s not queued: %s", state.id, exc)
            with _storage_errors():
                await self.catalog.request_cancel(state.id)
                await self.catalog.delete_state(state.id)
            raise Unavailable(message=_QUEUE_DOWN) from exc
        return self.to_calc_result(state)

    async def getTaskStatus(self, uuid: str) -> calcResult:
        """The state of one task."""
        bind_task(uuid)
        return self.to_calc_result(await self._read(uuid))

    async def cancelTask(self, uuid: str) -> calcResult:
        """Cancel a waiting or running task: REVOKED with a stop time."""
        bind_task(uuid)
        state = await self._read(uuid)
        self._check_not_final(state)
        with _storage_errors():
            # First the request the worker polls, then (for a task no worker has yet) the state.
            await self.catalog.request_cancel(state.id)
            if state.status == WAITING:
                state = state.evolve(status=REVOKED, stoptime=utcnow(), error="cancelled before it started")
                await self.catalog.write(state)
            elif _no_chunk_running(state):  # a split task whose chunks all wait in the queue
                state = state.evolve(status=REVOKED, stoptime=utcnow(), error="cancelled while running")
                await self.catalog.write(state)
            else:
                state = await self._await_revoked(state)
        log.info("task %s cancelled: %s", state.id, state.error or state.status)
        return self.to_calc_result(state)

    async def listTasks(self) -> list[calcResult]:
        """Every task, newest first."""
        with _storage_errors():
            _, total = await self.catalog.page(0, 1)
            states, _ = await self.catalog.page(0, max(total, 1))
        return [self.to_calc_result(s) for s in states]

    async def listTaskPage(self, offset: int, limit: int, status: str) -> TaskPage:
        """One page of tasks, newest first, optionally only those with one status."""
        offset = 0 if offset is None else offset
        limit = DEFAULT_PAGE if limit is None else limit
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise BadArgument(message=f"offset must be >= 0 and limit from 1 to {MAX_PAGE}")
        if status and status not in STATUSES:
            raise BadArgument(message=f"status must be one of {', '.join(STATUSES)}")
        with _storage_errors():
            states, total = await self.catalog.page(offset, limit, status or "")
        return TaskPage(tasks=[self.to_calc_result(s) for s in states], total=total)

    async def getHostStatus(self) -> HostStatus:
        """The compute host's CPU, memory, disk and address."""
        try:
            # psutil reads /proc and the disk; the address is a DNS lookup: off the loop.
            return await asyncio.to_thread(host_status, self.disk_path)
        except OSError as exc:
            raise Unavailable(message=f"cannot read the host's state: {exc}") from exc

    def to_calc_result(self, state: TaskState) -> calcResult:
        """The IDL struct for a task's state."""
        return calcResult(
            id=state.id,
            status=state.status,
            pushqtime=state.pushqtime,
            starttime=state.starttime,
            stoptime=state.stoptime,
            result=state.result,
            decimal=state.decimal,
            progress=state.progress,
            digits=state.digits,
            error=state.error,
            terms=state.terms,
            heartbeat=state.heartbeat,
            attempts=state.attempts,
            stalled=self._stalled(state),
            chunks_done=state.chunks.done if state.chunks else 0,
            chunks_total=state.chunks.total if state.chunks else 0,
            hosts=list(state.hosts),
        )

    def _stalled(self, state: TaskState) -> bool:
        if state.status != PROGRESS or state.heartbeat is None:
            return False
        age = datetime.now(UTC) - datetime.fromisoformat(state.heartbeat)
        return age.total_seconds() > self.stalled_after

    async def _read(self, task_id: str) -> TaskState:
        try:
            with _storage_errors():
                return await self.catalog.read(task_id)
        except UnknownTask as exc:
            raise BadTask(message=str(exc)) from None

    async def _await_revoked(self, state: TaskState) -> TaskState:
        # The worker polls the request between chunks (a fraction of a second); wait for it to
        # record REVOKED itself, so that its own progress writes cannot overwrite ours.
        deadline = time.monotonic() + CANCEL_WAIT
        while time.monotonic() < deadline:
            await asyncio.sleep(_CANCEL_POLL)
            state = await self.catalog.read(state.id)
            if state.status == REVOKED:
                return state
            self._check_not_final(state)  # it finished first: too late to cancel
        if self._stalled(state) or state.status == WAITING or _no_chunk_running(state):
            # No live worker holds it: record the cancellation; a redelivery (or a chunk that is
            # picked up later) will see the request.
            state = state.evolve(status=REVOKED, stoptime=utcnow(), error="cancelled (no worker was running it)")
            await self.catalog.write(state)
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


def _no_chunk_running(state: TaskState) -> bool:
    """A split task none of whose chunks is being computed: no worker would record its cancellation."""
    return state.chunks is not None and not state.chunks.running


@contextmanager
def _storage_errors() -> Iterator[None]:
    """A StorageError inside becomes the IDL's Unavailable (503 at the gateway); anything else passes
    untouched."""
    try:
        yield
    except StorageError as exc:
        raise Unavailable(message=str(exc)) from exc
