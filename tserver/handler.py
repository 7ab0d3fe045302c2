"""RPCceleryHandler: the Thrift service's methods, named as in rpcinterface.thrift.

Every argument is validated here; worker errors become the IDL's exceptions. No sockets: the
server wiring lives in tserver/server.py, so this class is tested directly.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path

from RPC.ttypes import BadArgument, BadDecimal, BadTask, HostStatus, TaskPage, Unavailable, calcResult
from tserver.hostinfo import host_status
from worker.errors import QueueUnavailable, StorageError, UnknownTask
from worker.state import STATUSES, WAITING, StateStore, TaskState, utcnow

log = logging.getLogger(__name__)

MIN_DECIMAL = 1
MAX_PAGE = 1000

Enqueue = Callable[[str, int], None]


class RPCceleryHandler:
    """Implements RPCcelery.Iface on top of the state store and the task queue."""

    def __init__(self, store: StateStore, enqueue: Enqueue, max_decimal: int) -> None:
        self.store = store
        self.enqueue = enqueue
        self.max_decimal = max_decimal

    def startCalcPi(self, decimal: int) -> str:
        """Queue a calculation; the new task's id."""
        return self.queueCalcPi(decimal).id

    def queueCalcPi(self, decimal: int) -> calcResult:
        """Queue a calculation; the new task's record."""
        self._check_decimal(decimal)
        state = TaskState(id=str(uuid.uuid4()), status=WAITING, decimal=decimal, pushqtime=utcnow())
        # The file exists before the message does, so the worker always finds it.
        try:
            self.store.write(state)
        except StorageError as exc:
            raise Unavailable(message=str(exc)) from exc
        try:
            self.enqueue(state.id, decimal)
        except QueueUnavailable as exc:
            # Never published: leave no WAITING file behind that nothing would ever pick up.
            self.store.delete(state.id)
            raise Unavailable(message="the task queue (RabbitMQ) is unavailable; try again shortly") from exc
        return to_calc_result(state)

    def getTaskStatus(self, uuid: str) -> calcResult:  # noqa: A002 - the IDL's argument name
        """The state of one task."""
        try:
            return to_calc_result(self.store.read(uuid))
        except UnknownTask as exc:
            raise BadTask(message=str(exc)) from None

    def listTasks(self) -> list[calcResult]:
        """Every task, newest first."""
        return [to_calc_result(s) for s in self.store.read_all()]

    def listTaskPage(self, offset: int, limit: int, status: str) -> TaskPage:
        """One page of tasks, newest first, optionally only those with one status."""
        offset = 0 if offset is None else offset
        limit = 100 if limit is None else limit
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise BadArgument(message=f"offset must be >= 0 and limit from 1 to {MAX_PAGE}")
        states = self.store.read_all()
        if status:
            if status not in STATUSES:
                raise BadArgument(message=f"status must be one of {', '.join(STATUSES)}")
            states = [s for s in states if s.status == status]
        page = states[offset: offset + limit]
        return TaskPage(tasks=[to_calc_result(s) for s in page], total=len(states))

    def getHostStatus(self) -> HostStatus:
        """The compute host's CPU, memory, disk and address."""
        try:
            return host_status(Path(self.store.folder))
        except OSError as exc:
            raise Unavailable(message=f"cannot read the host's state: {exc}") from exc

    def _check_decimal(self, decimal: object) -> None:
        if type(decimal) is not int or not MIN_DECIMAL <= decimal <= self.max_decimal:
            raise BadDecimal(
                message=f"decimal must be an integer from {MIN_DECIMAL} to {self.max_decimal}",
                min_decimal=MIN_DECIMAL,
                max_decimal=self.max_decimal,
            )


def to_calc_result(state: TaskState) -> calcResult:
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
    )
