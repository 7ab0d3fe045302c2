"""The Thrift server's housekeeper (an asyncio task running the store's rounds) and a broken index
seen through the handler."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from state.files import FileStore
from state.files_catalog import FileCatalog
from state.files_index import TaskIndex
from state.records import SUCCESS, WAITING, TaskState
from tserver.housekeeping import Housekeeper


def task_ids(store: FileStore) -> list[str]:
    return list(store.iter_task_ids())


def task(i: int, status: str = WAITING, stoptime: str | None = None) -> TaskState:
    queued = datetime(2026, 11, 28, 3, tzinfo=UTC) + timedelta(seconds=i)
    return TaskState(
        id=f"00000000-0000-4000-8000-{i:012d}",
        status=status,
        decimal=3,
        pushqtime=queued.isoformat(),
        stoptime=stoptime,
    )


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path)


def test_housekeeper_thread_runs_and_stops(store: FileStore) -> None:
    store.write(task(1, SUCCESS, "2020-01-01T00:00:00+00:00"))

    async def scenario() -> bool:
        keeper = Housekeeper(FileCatalog(store, ttl=60), interval=0.05)
        keeper.start()
        try:
            deadline = time.monotonic() + 5
            while task_ids(store) and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        finally:
            await keeper.stop()
        return keeper._task is not None and keeper._task.done()

    stopped = asyncio.run(scenario())
    assert task_ids(store) == [] and stopped


def test_a_broken_index_is_a_storage_error_and_the_handler_answers_unavailable(store: FileStore) -> None:
    from RPC.ttypes import Unavailable
    from state.errors import StorageError
    from tserver.handler import RPCceleryHandler

    index = TaskIndex(store)
    store.write(task(1))
    index.close()  # what a vanished temporary folder looks like to the caller
    with pytest.raises(StorageError, match="task index"):
        index.page(0, 10)
    catalog = FileCatalog(store, index=index)
    handler = RPCceleryHandler(catalog, enqueue=None, max_decimal=10)  # type: ignore[arg-type]  # never publishes
    with pytest.raises(Unavailable, match="task index"):
        asyncio.run(handler.listTaskPage(0, 10, ""))
    with pytest.raises(Unavailable):
        asyncio.run(handler.listTasks())

    # The housekeeper logs it and carries on.
    async def keeps_running() -> bool:
        keeper = Housekeeper(catalog, interval=0.01)
        keeper.start()
        try:
            await asyncio.sleep(0.1)
            return keeper._task is not None and not keeper._task.done()
        finally:
            await keeper.stop()

    assert asyncio.run(keeps_running())
