"""RedisStore: the Redis backend's blocking store, for the worker (a Celery pool process).

redis-py's connection pool notices a fork and opens new connections in the child, so the store can
be built before Celery forks its pool. A call that cannot reach Redis within REDIS_TIMEOUT raises
StorageError; the worker then keeps its task and retries (worker/tasks.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import redis

from state.errors import StorageError
from state.records import TaskState
from state.redis_layout import CANCEL_TTL, Keys, corrupt, decode, unavailable


class RedisStore:
    """TaskStore on Redis (see state/redis_layout.py for the keys)."""

    def __init__(self, client: redis.Redis, prefix: str, where: str) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.where = where  # host:port, for messages

    def read(self, task_id: str) -> TaskState:
        key = self.keys.task(task_id)
        with self._errors():
            try:
                raw = self.client.get(key)
            except redis.ResponseError as exc:  # the key holds something else than a string
                if "WRONGTYPE" not in str(exc):
                    raise
                return corrupt(task_id)
        return decode(task_id, raw)  # type: ignore[arg-type]  # GET answers bytes or None

    def write(self, state: TaskState) -> None:
        with self._errors():
            pipe = self.client.pipeline(transaction=True)
            self.keys.queue_write(pipe, state)
            pipe.execute()

    def update(self, task_id: str, change: Callable[[TaskState], TaskState | None]) -> TaskState:
        """Read, change and write the task atomically (WATCH/MULTI/EXEC, repeated while another writer
        got in between, so `change` may run more than once); the state now. `change` returning None
        writes nothing."""
        key = self.keys.task(task_id)
        now: list[TaskState] = []

        def attempt(pipe: redis.client.Pipeline) -> None:
            now.clear()
            state = decode(task_id, pipe.get(key))  # type: ignore[arg-type]  # immediate mode while watching
            new = change(state)
            now.append(state if new is None else new)
            if new is not None:
                pipe.multi()
                self.keys.queue_write(pipe, new)

        with self._errors():
            self.client.transaction(attempt, key)
        return now[0]

    def request_cancel(self, task_id: str) -> None:
        with self._errors():
            self.client.set(self.keys.cancel(task_id), b"1", ex=CANCEL_TTL)

    def cancel_requested(self, task_id: str) -> bool:
        with self._errors():
            return bool(self.client.exists(self.keys.cancel(task_id)))

    def clear_cancel(self, task_id: str) -> None:
        with self._errors():
            self.client.delete(self.keys.cancel(task_id))

    def close(self) -> None:
        self.client.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except redis.RedisError as exc:
            raise StorageError(unavailable(self.where, exc)) from exc
