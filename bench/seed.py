"""Tasks written straight into a state folder with the product's own FileStore, before it starts.

Going through the API would take minutes for 100,000 tasks and would run them all; the listing
only needs realistic files: mostly finished tasks, some failed, waiting and running ones, queued
over a span of time and written in shuffled order (directory order is not time order).
"""

from __future__ import annotations

import logging
import random
import uuid
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from bench.digits import expected_digits
from state.files import FileStore
from state.records import FAILURE, PROGRESS, SUCCESS, WAITING, TaskState

log = logging.getLogger(__name__)

_MIX = ((SUCCESS, 90), (FAILURE, 5), (WAITING, 3), (PROGRESS, 2))


def _task(rng: random.Random, pushed: datetime) -> TaskState:
    status = rng.choices([s for s, _ in _MIX], weights=[w for _, w in _MIX])[0]
    decimal = rng.randint(1, 8)
    task_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    base = TaskState(id=task_id, status=status, decimal=decimal, pushqtime=pushed.isoformat())
    started = (pushed + timedelta(milliseconds=rng.uniform(1, 50))).isoformat()
    stopped = (pushed + timedelta(milliseconds=rng.uniform(60, 2000))).isoformat()
    if status == SUCCESS:
        digits = expected_digits(decimal)
        return base.evolve(starttime=started, stoptime=stopped, progress=100.0, result=float(digits),
                           digits=digits, terms=rng.randint(100, 10**9), attempts=1)
    if status == FAILURE:
        return base.evolve(starttime=started, stoptime=stopped, progress=rng.uniform(0, 99),
                           terms=rng.randint(0, 10**8), attempts=3,
                           error="gave up: the worker died 3 times while computing this task")
    if status == PROGRESS:
        return base.evolve(starttime=started, progress=rng.uniform(0, 99), result=3.14, terms=rng.randint(0, 10**8),
                           attempts=1)
    return base


def seed_tasks(folder: Path, count: int, seed: int = 20261128) -> Counter[str]:
    """Write `count` task files into `folder`; how many of each status."""
    rng = random.Random(seed)
    now = datetime.now(timezone.utc)
    # One task every 3 s on average, the newest a minute ago: older than anything the run adds.
    pushes = [now - timedelta(seconds=60 + 3 * i + rng.random()) for i in range(count)]
    rng.shuffle(pushes)
    store = FileStore(folder)
    counts: Counter[str] = Counter()
    for i, pushed in enumerate(pushes):
        state = _task(rng, pushed)
        store.write(state)
        counts[state.status] += 1
        if (i + 1) % 20_000 == 0:
            log.info("seeded %d of %d task files", i + 1, count)
    return counts


def seed_ids(folder: Path, status: str = SUCCESS, limit: int = 64) -> list[str]:
    """Ids of up to `limit` seeded tasks with `status` (read back through the store)."""
    store = FileStore(folder)
    ids = []
    for task_id in sorted(store.task_ids()):
        if store.read(task_id).status == status:
            ids.append(task_id)
            if len(ids) == limit:
                break
    return ids
