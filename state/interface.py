"""The two faces of the state store, one per kind of caller.

    TaskStore     the worker's: blocking calls on one task, made from a Celery pool process
    TaskCatalog   the Thrift server's: coroutines on its event loop, plus listing and housekeeping

Each backend provides both (state/backends.py picks them from the settings).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from state.records import TaskState


class TaskStore(Protocol):
    """Blocking access to single tasks. Errors: UnknownTask, StorageError (state.errors)."""

    def read(self, task_id: str) -> TaskState:
        """The task's state; UnknownTask if there is none. A corrupt document reads as FAILURE."""
        ...

    def write(self, state: TaskState) -> None:
        """Create or replace the task's document (and its place in the listings), atomically."""
        ...

    def update(self, task_id: str, change: Callable[[TaskState], TaskState | None]) -> TaskState:
        """Read-modify-write of one task, atomic against every other writer using update (chunks of a
        split task finishing at once); the state now. `change` may run more than once and returns
        the new state, or None to write nothing."""
        ...

    def cancel_requested(self, task_id: str) -> bool:
        """True if the task's cancellation was requested."""
        ...

    def clear_cancel(self, task_id: str) -> None:
        """Remove the task's cancellation request, once it has taken effect."""
        ...


class TaskCatalog(Protocol):
    """What the Thrift server reads and writes; every call is awaited on its loop and never blocks it."""

    async def read(self, task_id: str) -> TaskState:
        """As TaskStore.read."""
        ...

    async def write(self, state: TaskState) -> None:
        """As TaskStore.write."""
        ...

    async def delete_state(self, task_id: str) -> None:
        """Remove the task's document (its cancellation request stays, for a message still in flight)."""
        ...

    async def request_cancel(self, task_id: str) -> None:
        """Leave a cancellation request that the worker computing the task polls."""
        ...

    async def page(self, offset: int, limit: int, status: str = "") -> tuple[list[TaskState], int]:
        """Tasks [offset, offset+limit) newest first, optionally only one status; and how many match."""
        ...

    async def counts(self) -> dict[str, int]:
        """How many tasks have each status (every one of STATUSES, 0 where none), from what the listings
        keep: no document is read (the Thrift server's metrics ask at every scrape)."""
        ...

    async def housekeep(self) -> None:
        """One round of upkeep: retention (RESULT_TTL) and whatever the backend needs."""
        ...

    async def close(self) -> None:
        """Release connections, threads and files."""
        ...
