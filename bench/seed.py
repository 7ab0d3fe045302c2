"""Tasks written straight into a product's store with the product's own code, before it starts.

Going through the API would take minutes for 100,000 tasks and would run them all; the listing
only needs realistic records: mostly finished tasks, some failed, waiting and running ones, queued
over a span of time and written in shuffled order (directory order is not time order). Files are
written by state.files.FileStore; Redis records by state.redis_store.RedisStore's layout
(Keys.queue_write: the document and every sorted set), a thousand to a pipeline.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from bench.digits import expected_digits
from state.files import FileStore
from state.records import FAILURE, PROGRESS, SUCCESS, WAITING, TaskState
from state.redis_store import RedisStore
from testing.stack import Stack

log = logging.getLogger(__name__)

_MIX = ((SUCCESS, 90), (FAILURE, 5), (WAITING, 3), (PROGRESS, 2))
_BATCH = 1000


def make_task(rng: random.Random, pushed: datetime, status: str | None = None) -> TaskState:
    """A realistic record: `status`, or one drawn from the listing's mix."""
    status = status or rng.choices([s for s, _ in _MIX], weights=[w for _, w in _MIX])[0]
    decimal = rng.randint(1, 8)
    task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    base = TaskState(id=task_id, status=status, decimal=decimal, pushqtime=pushed.isoformat())
    started = (pushed + timedelta(milliseconds=rng.uniform(1, 50))).isoformat()
    stopped = (pushed + timedelta(milliseconds=rng.uniform(60, 2000))).isoformat()
    if status == SUCCESS:
        digits = expected_digits(decimal)
        return base.evolve(
            starttime=started,
            stoptime=stopped,
            progress=100.0,
            result=float(digits),
            digits=digits,
            terms=rng.randint(100, 10**9),
            attempts=1,
            hosts=("bench-host",),
        )
    if status == FAILURE:
        return base.evolve(
            starttime=started,
            stoptime=stopped,
            progress=rng.uniform(0, 99),
            terms=rng.randint(0, 10**8),
            attempts=3,
            hosts=("bench-host",),
            error="gave up: the worker died 3 times while computing this task",
        )
    if status == PROGRESS:
        return base.evolve(
            starttime=started,
            progress=rng.uniform(0, 99),
            result=3.14,
            terms=rng.randint(0, 10**8),
            attempts=1,
            hosts=("bench-host",),
        )
    return base


def seeded(count: int, seed: int = 20261128, status: str | None = None) -> Iterator[TaskState]:
    """`count` records queued one every 3 s on average, the newest a minute ago, in shuffled order."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    pushes = [now - timedelta(seconds=60 + 3 * i + rng.random()) for i in range(count)]
    rng.shuffle(pushes)
    for pushed in pushes:
        yield make_task(rng, pushed, status)


def seed_tasks(folder: Path, count: int, seed: int = 20261128) -> Counter[str]:
    """Write `count` task files into `folder`; how many of each status."""
    store = FileStore(folder)
    counts: Counter[str] = Counter()
    for i, state in enumerate(seeded(count, seed)):
        store.write(state)
        counts[state.status] += 1
        if (i + 1) % 20_000 == 0:
            log.info("seeded %d of %d task files", i + 1, count)
    return counts


def redis_store(stack: Stack) -> RedisStore:
    """The product's blocking Redis store under the stack's key prefix."""
    return RedisStore(redis.Redis.from_url(stack.redis_url, socket_timeout=30), stack.redis_prefix, stack.redis_url)


def used_memory(client: redis.Redis) -> int:
    """Redis's INFO memory used_memory, in bytes."""
    return int(client.info("memory")["used_memory"])  # type: ignore[index] - redis-py types info() for both its sync and async clients


def seed_redis(stack: Stack, count: int, seed: int = 20261128) -> tuple[Counter[str], int]:
    """Write `count` records under the stack's prefix; how many of each status, and the growth of Redis's
    used_memory meanwhile (others' keys included: the machine's Redis is shared)."""
    store = redis_store(stack)
    counts: Counter[str] = Counter()
    try:
        before = used_memory(store.client)
        pipe = store.client.pipeline(transaction=False)
        for i, state in enumerate(seeded(count, seed)):
            store.keys.queue_write(pipe, state)
            counts[state.status] += 1
            if (i + 1) % _BATCH == 0:
                pipe.execute()
            if (i + 1) % 20_000 == 0:
                log.info("seeded %d of %d Redis records", i + 1, count)
        pipe.execute()
        return counts, used_memory(store.client) - before
    finally:
        store.close()


def seed_stack(stack: Stack, count: int) -> Counter[str]:
    """Seed the stack's store, whichever its backend."""
    if stack.state_backend == "redis":
        return seed_redis(stack, count)[0]
    return seed_tasks(stack.state_dir, count)


def seed_ids(folder: Path, status: str = SUCCESS, limit: int = 64) -> list[str]:
    """Ids of up to `limit` seeded tasks with `status` (read back through the store)."""
    store = FileStore(folder)
    ids = []
    for task_id in sorted(store.iter_task_ids()):
        if store.read(task_id).status == status:
            ids.append(task_id)
            if len(ids) == limit:
                break
    return ids
