"""TaskReader: single flight for concurrent reads, ended tasks served without a hop, running ones fresh."""

from __future__ import annotations

import asyncio

import pytest

from app.task_reader import TaskReader
from RPC.ttypes import BadTask, calcResult

ID = "00000000-0000-4000-8000-000000000001"


class CountingPool:
    """Answers getTaskStatus after a short delay with the status it is set to; counts the calls."""

    def __init__(self, status: str = "PROGRESS") -> None:
        self.status, self.calls = status, 0

    async def call(self, method: str, task_id: str) -> calcResult:
        assert method == "getTaskStatus"
        self.calls += 1
        await asyncio.sleep(0.02)
        if self.status == "MISSING":
            raise BadTask(message=f"no task with id {task_id}")
        return calcResult(id=task_id, status=self.status, pushqtime="2026-11-28T03:00:00+00:00", progress=self.calls)


def test_concurrent_reads_share_one_call() -> None:
    async def check() -> None:
        pool = CountingPool()
        reader = TaskReader(pool)  # type: ignore[arg-type] - a stand-in pool with the one method the reader calls
        records = await asyncio.gather(*[reader.get(ID) for _ in range(50)])
        assert pool.calls == 1 and {r.progress for r in records} == {1}

    asyncio.run(check())


def test_running_tasks_are_read_fresh_and_ended_ones_are_kept() -> None:
    async def check() -> None:
        pool = CountingPool()
        reader = TaskReader(pool, final_ttl=0.2)  # type: ignore[arg-type] - a stand-in pool with the one method the reader calls
        assert (await reader.get(ID)).progress == 1
        assert (await reader.get(ID)).progress == 2  # PROGRESS: a new call each time
        pool.status = "SUCCESS"
        await reader.get(ID)
        for _ in range(10):
            await reader.get(ID)
        assert pool.calls == 3  # SUCCESS: served from memory
        await asyncio.sleep(0.25)
        await reader.get(ID)
        assert pool.calls == 4  # after final_ttl, read again (retention may have removed it)

    asyncio.run(check())


def test_errors_reach_every_waiter_and_are_not_cached() -> None:
    async def check() -> None:
        pool = CountingPool("MISSING")
        reader = TaskReader(pool)  # type: ignore[arg-type] - a stand-in pool with the one method the reader calls
        results = await asyncio.gather(*[reader.get(ID) for _ in range(5)], return_exceptions=True)
        assert all(isinstance(r, BadTask) for r in results) and pool.calls == 1
        with pytest.raises(BadTask):
            await reader.get(ID)
        assert pool.calls == 2

    asyncio.run(check())


def test_a_waiter_that_gives_up_does_not_cancel_the_others() -> None:
    async def check() -> None:
        pool = CountingPool()
        reader = TaskReader(pool)  # type: ignore[arg-type] - a stand-in pool with the one method the reader calls
        impatient = asyncio.ensure_future(reader.get(ID))
        patient = asyncio.ensure_future(reader.get(ID))
        await asyncio.sleep(0.005)
        impatient.cancel()
        assert (await patient).id == ID and pool.calls == 1

    asyncio.run(check())


def test_the_cache_is_bounded() -> None:
    reader = TaskReader(CountingPool(), max_entries=3)  # type: ignore[arg-type] - a stand-in pool with the one method the reader calls
    for i in range(10):
        reader.remember(calcResult(id=str(i), status="SUCCESS", pushqtime="2026-11-28T03:00:00+00:00"))
    assert list(reader._final) == ["7", "8", "9"]
