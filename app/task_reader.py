"""TaskReader: reads one task's state over Thrift, sharing the work between requests.

Many clients poll the same task (a dashboard, a script in a loop). Two things keep that cheap:

* single flight: concurrent requests for the same task share one Thrift call;
* an ended task (SUCCESS, FAILURE, REVOKED) never changes again, so its record is kept, in a
  bounded LRU map, and served without a hop for `final_ttl` seconds. The TTL only bounds how long a
  record removed by retention (RESULT_TTL, days) can still be seen.

A waiting or running task is always read fresh: its progress must never look older than it is.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from app.thrift_client import ThriftPool
from RPC.ttypes import calcResult

FINAL_STATUSES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})


class TaskReader:
    """getTaskStatus with single flight and a cache of ended tasks."""

    def __init__(self, thrift: ThriftPool, *, max_entries: int = 10_000, final_ttl: float = 5.0) -> None:
        self.thrift = thrift
        self.max_entries = max_entries
        self.final_ttl = final_ttl
        self._final: OrderedDict[str, tuple[float, calcResult]] = OrderedDict()
        self._inflight: dict[str, asyncio.Future[calcResult]] = {}

    async def get(self, task_id: str) -> calcResult:
        """The task's state (IDL exceptions and ComputeUnavailable pass through)."""
        cached = self._final.get(task_id)
        if cached is not None:
            if time.monotonic() - cached[0] < self.final_ttl:
                self._final.move_to_end(task_id)
                return cached[1]
            del self._final[task_id]
        pending = self._inflight.get(task_id)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(task_id))
            self._inflight[task_id] = pending
            pending.add_done_callback(lambda _: self._inflight.pop(task_id, None))
        # Shielded: one waiter giving up (client gone) must not cancel the call the others share.
        return await asyncio.shield(pending)

    def remember(self, record: calcResult) -> None:
        """Keep a record that just ended (e.g. the answer to a cancellation)."""
        if record.status in FINAL_STATUSES:
            self._final[record.id] = (time.monotonic(), record)
            self._final.move_to_end(record.id)
            while len(self._final) > self.max_entries:
                self._final.popitem(last=False)

    async def _fetch(self, task_id: str) -> calcResult:
        record = await self.thrift.call("getTaskStatus", task_id)
        self.remember(record)
        return record
