"""How the Redis backend lays tasks out in Redis, shared by its blocking store and its async catalog.

Every key starts with REDIS_KEY_PREFIX (`pi:` by default); ids are checked to be canonical UUIDs
before they become part of a key, so nothing else ever does.

    <prefix>task:<id>        the task's state: its JSON document (the same bytes as a state file)
    <prefix>cancel:<id>      a cancellation request (the worker polls it), expiring after a day
    <prefix>tasks            sorted set of every task id, scored by its queue time (newest-first pages)
    <prefix>status:<STATUS>  the same, one set per status (filtered pages, counts)
    <prefix>ended            ended tasks scored by their stop time (retention, RESULT_TTL)

A write changes the document and its place in every set in one MULTI/EXEC transaction, so any
Thrift server sees a task and its listings agree at every moment, and a page costs O(log n + page).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any, Protocol

from state.errors import UnknownTask
from state.records import FAILURE, STATUSES, TaskState, check_task_id, utcnow

log = logging.getLogger(__name__)

#: A cancellation request whose message never arrives is forgotten after this many seconds.
CANCEL_TTL = 24 * 3600
# Documents are a few hundred bytes; anything far larger is not ours and is not parsed.
MAX_DOCUMENT_BYTES = 64 * 1024


class Pipeline(Protocol):
    """The commands a write queues: redis-py's pipelines, blocking and async, both have them."""

    def set(self, name: str, value: bytes) -> Any: ...
    def delete(self, *names: str) -> Any: ...
    def zadd(self, name: str, mapping: dict[str, float]) -> Any: ...
    def zrem(self, name: str, *values: str) -> Any: ...


class Keys:
    """The key names under one prefix."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.tasks = f"{prefix}tasks"
        self.ended = f"{prefix}ended"
        self._statuses = {status: f"{prefix}status:{status}" for status in STATUSES}

    def task(self, task_id: object) -> str:
        """The document's key; UnknownTask for anything but a canonical UUID."""
        return f"{self.prefix}task:{check_task_id(task_id)}"

    def cancel(self, task_id: object) -> str:
        """The cancellation request's key."""
        return f"{self.prefix}cancel:{check_task_id(task_id)}"

    def status(self, status: str) -> str:
        """The sorted set of one status (a KeyError for anything else)."""
        return self._statuses[status]

    def queue_write(self, pipe: Pipeline, state: TaskState) -> None:
        """Queue, in a transaction, what writing `state` changes: the document and every set."""
        pipe.set(self.task(state.id), state.to_json())
        pipe.zadd(self.tasks, {state.id: _timestamp(state.pushqtime)})
        for status, key in self._statuses.items():
            if status == state.status:
                pipe.zadd(key, {state.id: _timestamp(state.pushqtime)})
            else:
                pipe.zrem(key, state.id)
        if state.is_final:
            pipe.zadd(self.ended, {state.id: _timestamp(state.stoptime) if state.stoptime else _timestamp(utcnow())})
        else:
            pipe.zrem(self.ended, state.id)

    def sets(self) -> tuple[str, ...]:
        """Every sorted set."""
        return (self.tasks, self.ended, *self._statuses.values())

    def queue_remove(self, pipe: Pipeline, task_id: str, *, cancel: bool) -> None:
        """Queue the removal of a task's document and set entries (and its cancellation request)."""
        pipe.delete(self.task(task_id), *([self.cancel(task_id)] if cancel else []))
        for key in self.sets():
            pipe.zrem(key, task_id)


def decode(task_id: str, raw: bytes | None) -> TaskState:
    """A document read from Redis; UnknownTask if there was none. One that is not ours reads as a
    FAILURE that says so (and is logged), never as an error of the caller's."""
    if raw is None:
        raise UnknownTask(f"no task with id {task_id}")
    try:
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise ValueError("document too large")
        state = TaskState.from_json(raw)
        if state.id != task_id:
            raise ValueError("id in the document does not match its key")
        return state
    except (ValueError, TypeError, UnicodeDecodeError) as exc:
        log.warning("state document of task %s is corrupt: %s", task_id, exc)
        return corrupt(task_id)


def corrupt(task_id: str) -> TaskState:
    """How a task whose document cannot be used is shown: ended, with the reason."""
    now = utcnow()
    return TaskState(
        id=task_id,
        status=FAILURE,
        decimal=1,
        pushqtime=now,
        stoptime=now,
        error="the task's state document is corrupt or unreadable",
    )


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def unavailable(where: str, exc: BaseException) -> str:
    """The one sentence a caller (503 at the gateway) gets when Redis cannot be used."""
    return f"the state store (Redis at {where}) is unavailable: {exc.__class__.__name__}: {exc}"[:300]
