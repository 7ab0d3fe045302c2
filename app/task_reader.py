"""TaskReader: reads one task's state over Thrift, sharing the work between requests.

Many clients poll the same task (a dashboard, a script in a loop). Two things keep that cheap:

* single flight: concurrent requests for the same task share one Thrift call;
* an ended task (SUCCESS, FAILURE, REVOKED) never changes again, so its record is kept, in a
  bounded LRU map, and served without a hop for `final_ttl` seconds. The TTL only bounds how long a
  record removed by retention (RESULT_TTL, days) can still be seen.

A waiting or running task is always read fresh: its progress must never look older than it is.

A read also carries its JSON body, rendered once however many requests share it (for an ended
task, once in its life): the route answers with those bytes, skipping the per-request model
validation and serialization that cost the gateway about a third of a status read's CPU.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable

from app.contract import FINAL_STATUSES
from app.models import task_json
from app.thrift_client import ThriftCaller
from RPC.ttypes import calcResult


class _Read:
    """One answer of getTaskStatus, when it came, and its JSON body once rendered."""

    __slots__ = ("_body", "at", "record")

    def __init__(self, record: calcResult) -> None:
        self.record = record
        self.at = time.monotonic()
        self._body: bytes | None = None

    def body(self, render: Callable[[calcResult], bytes]) -> bytes:
        if self._body is None:
            self._body = render(self.record)
        return self._body


class TaskReader:
    """getTaskStatus with single flight and a cache of ended tasks."""

    def __init__(
        self,
        thrift: ThriftCaller,
        *,
        max_entries: int = 10_000,
        final_ttl: float = 5.0,
        render: Callable[[calcResult], bytes] = task_json,
    ) -> None:
        self.thrift = thrift
        self.max_entries = max_entries
        self.final_ttl = final_ttl
        self.render = render
        self._final: OrderedDict[str, _Read] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[_Read]] = {}

    async def get(self, task_id: str) -> calcResult:
        """The task's state (IDL exceptions and ComputeUnavailable pass through)."""
        return (await self._read(task_id)).record

    async def get_json(self, task_id: str) -> bytes:
        """The task's state as the REST API shows it (TaskModel), JSON-encoded."""
        return (await self._read(task_id)).body(self.render)

    def remember(self, record: calcResult) -> bytes:
        """Keep a record that just ended (e.g. the answer to a cancellation); its JSON body."""
        return self._keep(_Read(record)).body(self.render)

    async def _read(self, task_id: str) -> _Read:
        cached = self._final.get(task_id)
        if cached is not None:
            if time.monotonic() - cached.at < self.final_ttl:
                self._final.move_to_end(task_id)
                return cached
            del self._final[task_id]
        pending = self._inflight.get(task_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(task_id))
            self._inflight[task_id] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(task_id, None))
        # Shielded: one waiter giving up (client gone) must not cancel the call the others share.
        return await asyncio.shield(pending)

    async def _fetch(self, task_id: str) -> _Read:
        return self._keep(_Read(await self.thrift.call("getTaskStatus", task_id)))

    def _keep(self, read: _Read) -> _Read:
        """Cache `read` if its task has ended (bounded, least recently used out first)."""
        if read.record.status in FINAL_STATUSES:
            self._final[read.record.id] = read
            self._final.move_to_end(read.record.id)
            while len(self._final) > self.max_entries:
                self._final.popitem(last=False)
        return read
