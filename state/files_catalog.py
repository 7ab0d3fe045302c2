"""FileCatalog: the files backend as the Thrift server uses it, without blocking its event loop.

Every call reads or writes files (and the SQLite index), which can stall on a busy or failing disk,
so each one runs on threads of its own (state/io_threads.py, handed over in batches) and is awaited
on the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from state.errors import StorageError
from state.files import FileStore
from state.files_housekeeping import sweep
from state.files_index import TaskIndex
from state.io_threads import IOThreads
from state.records import TaskState

log = logging.getLogger(__name__)

T = TypeVar("T")


class FileCatalog:
    """TaskCatalog over a FileStore and its TaskIndex."""

    def __init__(self, store: FileStore, *, ttl: float = 0.0, threads: int = 8, index: TaskIndex | None = None) -> None:
        self.store = store
        self.index = index if index is not None else TaskIndex(store)
        self.ttl = ttl
        self._threads = IOThreads(threads, "state-files")

    async def read(self, task_id: str) -> TaskState:
        return await self._run(self.store.read, task_id)

    async def write(self, state: TaskState) -> None:
        await self._run(self._write, state)

    async def delete_state(self, task_id: str) -> None:
        await self._run(self._delete_state, task_id)

    async def request_cancel(self, task_id: str) -> None:
        await self._run(self.store.request_cancel, task_id)

    async def page(self, offset: int, limit: int, status: str = "") -> tuple[list[TaskState], int]:
        return await self._run(self.index.page, offset, limit, status)

    async def counts(self) -> dict[str, int]:
        return await self._run(self.index.counts)

    async def housekeep(self) -> None:
        await self._run(sweep, self.index, self.ttl)

    async def close(self) -> None:
        self._threads.shutdown()
        self.index.close()

    def _write(self, state: TaskState) -> None:
        self.store.write(state)
        # The file is written and is the truth: an index that cannot take it now (its temporary
        # folder full, say) must not turn the write into an error; the next rescan adds it.
        try:
            self.index.add(state)
        except StorageError as exc:
            log.warning("task %s not indexed yet: %s", state.id, exc)

    def _delete_state(self, task_id: str) -> None:
        self.store.delete_state(task_id)
        try:
            self.index.discard(task_id)
        except StorageError as exc:
            log.warning("task %s not removed from the index yet: %s", task_id, exc)

    async def _run(self, call: Callable[..., T], *args: object) -> T:
        return await self._threads.run(call, *args)
