"""Snapshots: what a feed (app/feeds.py) last saw, ready to send as one event, and the fetches that
make them from the Thrift server's replies.

Every expected failure of a fetch becomes a snapshot too (`unavailable`, or `gone` for a task that
no longer exists), so that a stream reports trouble as an event and goes on when it clears.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from app.contract import FINAL_STATUSES, Status
from app.errors import ComputeFailed, ComputeUnavailable
from app.event_models import TaskPage
from app.models import HostModel, TaskModel
from app.thrift_client import ThriftCaller
from RPC.ttypes import BadTask, Unavailable


@dataclass(frozen=True)
class Snapshot:
    """What a feed last saw, ready to send: an event name and its JSON data."""

    event: str
    data: str
    #: Nothing will change any more: the feed stops polling, and a stream of it ends after sending it.
    final: bool = False
    #: The event's id: a digest of the data, the same across gateway restarts (None: not resumable).
    id: str | None = field(default=None, compare=False)

    @classmethod
    def state(cls, event: str, data: str, *, final: bool = False) -> Snapshot:
        """A resumable snapshot, whose id is a digest of its data."""
        return cls(event, data, final, hashlib.blake2b(data.encode(), digest_size=8).hexdigest())

    @classmethod
    def problem(cls, event: str, detail: str, *, final: bool = False) -> Snapshot:
        """A snapshot that reports trouble (`{"detail": ...}`), with no id."""
        return cls(event, json.dumps({"detail": detail}), final)

    @property
    def detail(self) -> str:
        """The `detail` of a problem snapshot."""
        return str(json.loads(self.data).get("detail", ""))


_TROUBLE = (ComputeUnavailable, ComputeFailed, Unavailable)


async def fetch_task(thrift: ThriftCaller, task_id: str) -> Snapshot:
    """Event `task` (final once the task has ended), or `gone` if there is no such task."""
    try:
        task = TaskModel.from_thrift(await thrift.call("getTaskStatus", task_id))
    except BadTask as exc:
        return Snapshot.problem("gone", exc.message, final=True)
    except _TROUBLE as exc:
        return _unavailable(exc)
    return Snapshot.state("task", task.model_dump_json(), final=task.status in FINAL_STATUSES)


async def fetch_page(thrift: ThriftCaller, offset: int, limit: int, status: Status | None) -> Snapshot:
    """Event `tasks`: a page of the list, newest first."""
    try:
        page = await thrift.call("listTaskPage", offset, limit, status.value if status else "")
    except _TROUBLE as exc:
        return _unavailable(exc)
    tasks = [TaskModel.from_thrift(r) for r in page.tasks]
    body = TaskPage(total=page.total, offset=offset, limit=limit, status=status, tasks=tasks)
    return Snapshot.state("tasks", body.model_dump_json())


async def fetch_host(thrift: ThriftCaller) -> Snapshot:
    """Event `host`: the compute host's state."""
    try:
        host = HostModel.from_thrift(await thrift.call("getHostStatus"))
    except _TROUBLE as exc:
        return _unavailable(exc)
    return Snapshot("host", host.model_dump_json())  # no id: the host is no state to resume


def _unavailable(exc: Exception) -> Snapshot:
    return Snapshot.problem("unavailable", exc.message if isinstance(exc, Unavailable) else str(exc))
