"""RedisCatalog: the Redis backend as the Thrift server uses it, on its event loop (redis.asyncio).

With it a Thrift server keeps nothing another replica needs: any number of them can serve the
same tasks. Every call is bounded by REDIS_TIMEOUT as a whole (retries included), so a Redis that
is gone or frozen costs the caller a clear StorageError (503 at the gateway) in time, never a hang.

Reads asked for in one pass of the loop go to Redis as one MGET (redis-py sends each command on its
own, and a write to Redis's socket per read was a quarter of the Thrift server's time): measured
side by side (64 waiting tasks read at 50 connections, 2-core VM, 4 alternating runs, medians), the
Thrift server's CPU per read 0.118 -> 0.087 ms, reads 4,111 -> 4,268/s.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import cast

import redis
import redis.asyncio

from state.errors import StorageError, UnknownTask
from state.records import STATUSES, TASK_ID, TaskState
from state.redis_layout import CANCEL_TTL, Keys, corrupt, decode, unavailable

log = logging.getLogger(__name__)

# Retention removes ended tasks in batches of this many, so a week expiring at once is no single
# command that blocks Redis for long.
_EXPIRE_PER_BATCH = 500


class RedisCatalog:
    """TaskCatalog on Redis (see state/redis_layout.py for the keys)."""

    def __init__(
        self, client: redis.asyncio.Redis, prefix: str, where: str, *, timeout: float, ttl: float = 0.0
    ) -> None:
        self.client = client
        self.keys = Keys(prefix)
        self.where = where
        self.timeout = timeout
        self.ttl = ttl
        self._reads: dict[str, asyncio.Future[bytes | None]] | None = None  # the reads of this loop pass
        self._fetches: set[asyncio.Future[None]] = set()

    async def read(self, task_id: str) -> TaskState:
        self.keys.task(task_id)  # an id that can be no key fails here, alone
        loop = asyncio.get_running_loop()
        if self._reads is None:
            # The reads asked for in this pass of the loop (requests read together) go as one MGET.
            self._reads = {}
            loop.call_soon(self._send_reads)
        shared = self._reads.get(task_id)
        if shared is None:
            shared = self._reads[task_id] = loop.create_future()
        # Shielded: several readers may share it, and one giving up must not cancel it for the others.
        raw = await asyncio.shield(shared)
        if raw is None:  # no such task, or a key of another type (MGET answers both with nil)
            return await self._read_one(task_id)
        return decode(task_id, raw)

    def _send_reads(self) -> None:
        batch, self._reads = self._reads or {}, None
        fetch = asyncio.ensure_future(self._fetch(batch))
        self._fetches.add(fetch)  # held until done: the loop keeps only a weak reference to a task
        fetch.add_done_callback(self._fetches.discard)

    async def _fetch(self, batch: dict[str, asyncio.Future[bytes | None]]) -> None:
        ids = list(batch)
        try:
            async with self._errors():
                raws = cast(list[bytes | None], await self.client.mget([self.keys.task(i) for i in ids]))
        except Exception as exc:  # noqa: BLE001 - every reader of the batch gets it, none waits forever
            for shared in batch.values():
                if not shared.done():
                    shared.set_exception(StorageError(str(exc)) if isinstance(exc, StorageError) else exc)
            return
        for task_id, raw in zip(ids, raws, strict=True):
            if not batch[task_id].done():
                batch[task_id].set_result(raw)

    async def _read_one(self, task_id: str) -> TaskState:
        key = self.keys.task(task_id)
        async with self._errors():
            try:
                raw = cast(bytes | None, await self.client.get(key))  # bytes: the client has no decode_responses
            except redis.ResponseError as exc:  # the key holds something else than a string
                if "WRONGTYPE" not in str(exc):
                    raise
                return corrupt(task_id)
        return decode(task_id, raw)

    async def write(self, state: TaskState) -> None:
        async with self._errors():
            pipe = self.client.pipeline(transaction=True)
            self.keys.queue_write(pipe, state)
            await pipe.execute()

    async def delete_state(self, task_id: str) -> None:
        async with self._errors():
            pipe = self.client.pipeline(transaction=True)
            self.keys.queue_remove(pipe, task_id, cancel=False)
            await pipe.execute()

    async def request_cancel(self, task_id: str) -> None:
        async with self._errors():
            await self.client.set(self.keys.cancel(task_id), b"1", ex=CANCEL_TTL)

    async def page(self, offset: int, limit: int, status: str = "") -> tuple[list[TaskState], int]:
        index = self.keys.status(status) if status else self.keys.tasks
        async with self._errors():
            pipe = self.client.pipeline(transaction=False)
            pipe.zrevrange(index, offset, offset + limit - 1)
            pipe.zcard(index)
            members, total = await pipe.execute()
            ids = [m.decode() for m in members]
            valid = [t for t in ids if TASK_ID.fullmatch(t)]
            raws = cast(list[bytes | None], await self.client.mget([self.keys.task(t) for t in valid]) if valid else [])
        gone = [t for t in ids if not TASK_ID.fullmatch(t)]
        if gone:
            log.warning("dropping %d entries of %s that are not task ids", len(gone), index)
        states = []
        for task_id, raw in zip(valid, raws, strict=True):
            try:
                states.append(decode(task_id, raw))
            except UnknownTask:  # its document is gone (removed by hand, evicted): one short
                gone.append(task_id)
        if gone:
            await self._forget(gone)
        return states, int(total)

    async def counts(self) -> dict[str, int]:
        async with self._errors():
            pipe = self.client.pipeline(transaction=False)
            for status in STATUSES:
                pipe.zcard(self.keys.status(status))
            sizes = await pipe.execute()
        return {status: int(size) for status, size in zip(STATUSES, sizes, strict=True)}

    async def housekeep(self) -> None:
        if not self.ttl:
            return
        cutoff = time.time() - self.ttl
        removed = 0
        while True:
            async with self._errors():
                expired = cast(
                    list[bytes], await self.client.zrangebyscore(self.keys.ended, "-inf", cutoff, 0, _EXPIRE_PER_BATCH)
                )
            if not expired:
                break
            await self._forget([m.decode() for m in expired], cancel=True)
            removed += len(expired)
        if removed:
            log.info("removed %d results older than RESULT_TTL=%gs", removed, self.ttl)

    async def close(self) -> None:
        await self.client.aclose()

    async def _forget(self, task_ids: list[str], *, cancel: bool = False) -> None:
        async with self._errors():
            pipe = self.client.pipeline(transaction=True)
            for task_id in task_ids:
                if TASK_ID.fullmatch(task_id):
                    self.keys.queue_remove(pipe, task_id, cancel=cancel)
                else:  # never a key: just out of the sets
                    for key in self.keys.sets():
                        pipe.zrem(key, task_id)
            await pipe.execute()

    @asynccontextmanager
    async def _errors(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self.timeout):
                yield
        except TimeoutError as exc:
            raise StorageError(unavailable(self.where, TimeoutError(f"no answer within {self.timeout:g} s"))) from exc
        except redis.RedisError as exc:
            raise StorageError(unavailable(self.where, exc)) from exc
