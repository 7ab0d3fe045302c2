"""What a split task costs outside the chunks' sums, measured in this process with the product's code:

* the record update every chunk makes twice (started, finished: state's `update`, an flock on the
  files backend, WATCH/MULTI/EXEC on Redis), one writer and two writers at once on one record (the
  second gives the record's capacity when every process of every host updates the same record);
* the combining step for d = 12's count of chunk results (their JSON as the chord delivers it, the
  check that they cover the plan once each, the exact sum, the bracket proof).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import random
import statistics
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.plan import Plan
from bench.report import Section
from state.files import FileStore
from state.interface import TaskStore
from state.ledger import ChunkLedger
from state.records import PROGRESS, TaskState, utcnow
from state.redis_store import RedisStore
from worker import series, split

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
_WINDOW = 8  # chunks running at once in the simulated sequence (they finish out of order)
_COMBINE_REPEATS = 5


@dataclass
class Costs:
    """Record update seconds per backend (one writer: median), records/s with two writers, combine seconds."""

    update_s: dict[str, float] = field(default_factory=dict)
    update_p99_s: dict[str, float] = field(default_factory=dict)
    two_writers_per_s: dict[str, float] = field(default_factory=dict)
    retries: dict[str, float] = field(default_factory=dict)  # change() calls per update beyond the first
    combine_s: float = 0.0
    combine_results: int = 0


def _open(backend: str, where: str) -> TaskStore:
    if backend == "files":
        return FileStore(Path(where))
    return RedisStore(redis.Redis.from_url(REDIS_URL, socket_timeout=10), where, REDIS_URL)


def _record(chunks: int) -> TaskState:
    plan = split.plan(12, 10**10, 4 * 10**9, 5000)
    assert plan is not None
    size = (plan.end - plan.start) // chunks
    ledger = ChunkLedger(start=plan.start, size=size, end=plan.start + size * chunks, prefix_value=3.0)
    return TaskState(
        id=str(uuid.uuid4()),
        status=PROGRESS,
        decimal=12,
        pushqtime=utcnow(),
        starttime=utcnow(),
        attempts=1,
        chunks=ledger,
        hosts=("bench-host",),
    )


def _lifecycle(backend: str, where: str, task_id: str, ks: list[int], calls: Any) -> list[float]:
    """Chunks `ks` started and finished, _WINDOW at a time, out of order; seconds of every update."""
    store = _open(backend, where)
    times: list[float] = []
    rng = random.Random(ks[0] if ks else 0)

    def started(k: int) -> Any:
        def change(now: TaskState) -> TaskState:
            calls.value += 1
            assert now.chunks is not None
            ledger, n = now.chunks.started(k)
            return now.evolve(chunks=ledger, attempts=max(now.attempts, n), heartbeat=utcnow())

        return change

    def finished(k: int) -> Any:
        def change(now: TaskState) -> TaskState:
            calls.value += 1
            assert now.chunks is not None
            ledger = now.chunks.finished(k, 1e-16)
            share = 100 * (ledger.start + ledger.pairs_done) / ledger.end
            return now.evolve(
                chunks=ledger,
                progress=max(now.progress, min(99.9, round(share, 2))),
                result=round(ledger.prefix_value, 12),
                terms=2 * (ledger.start + ledger.pairs_done),
                heartbeat=utcnow(),
            )

        return change

    for w in range(0, len(ks), _WINDOW):
        window = ks[w : w + _WINDOW]
        done = list(window)
        rng.shuffle(done)
        for change in [*(started(k) for k in window), *(finished(k) for k in done)]:
            start = time.perf_counter()
            store.update(task_id, change)
            times.append(time.perf_counter() - start)
    return times


def _child(backend: str, where: str, task_id: str, ks: list[int], calls: Any) -> None:
    _lifecycle(backend, where, task_id, ks, calls)


def _updates(backend: str, n: int, costs: Costs) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-updates-") as folder:
        where = folder if backend == "files" else f"bench-upd-{uuid.uuid4().hex[:12]}:"
        store = _open(backend, where)
        try:
            record = _record(2 * n)
            store.write(record)
            calls = multiprocessing.get_context("fork").Value("l", 0)
            times = sorted(_lifecycle(backend, where, record.id, list(range(n)), calls))
            costs.update_s[backend] = statistics.median(times)
            costs.update_p99_s[backend] = times[int(0.99 * (len(times) - 1))]
            calls.value = 0
            halves = [list(range(n, 2 * n, 2)), list(range(n + 1, 2 * n, 2))]
            ctx = multiprocessing.get_context("fork")
            procs = [ctx.Process(target=_child, args=(backend, where, record.id, ks, calls)) for ks in halves]
            start = time.perf_counter()
            for p in procs:
                p.start()
            for p in procs:
                p.join(120)
            elapsed = time.perf_counter() - start
            costs.two_writers_per_s[backend] = 2 * n / elapsed
            costs.retries[backend] = calls.value / (2 * n) - 1
        finally:
            if isinstance(store, RedisStore):
                store.client.delete(store.keys.task(record.id), *store.keys.sets())
                store.close()


def _combine(count: int) -> float:
    """Seconds to combine `count` chunk results of d = 12's plan (median of a few)."""
    plan = split.plan(12, 10**10, 4 * 10**9, 5000)
    assert plan is not None
    size = (plan.end - plan.start) // count
    results = []
    for k in range(count):
        j0 = plan.start + k * size
        total, error = series.sum_range(j0, j0 + 1000).scaled  # a chunk's magnitude, from a thousand pairs
        results.append({"k": k, "total": str(total * (size // 1000)), "error": str(error * (size // 1000))})
    wire = json.dumps(results)
    times = []
    for _ in range(_COMBINE_REPEATS):
        start = time.perf_counter()
        got = json.loads(wire)
        assert not split.missing(got, count)
        total, error = split.combine(got, plan.prefix_total, plan.prefix_error)
        series.prove(total, error, plan.start + size * count, 12)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(plan: Plan, section: Section) -> Costs:
    """Record updates on both backends and the combining step; figures added to `section`."""
    costs = Costs()
    n = plan.record_updates
    for backend in ("files", "redis"):
        _updates(backend, n, costs)
        section.add(
            f"record update, {backend}: one writer",
            1e3 * costs.update_s[backend],
            "ms",
            how=f"median of {2 * n} updates (p99 {1e3 * costs.update_p99_s[backend]:.2f} ms)",
            key=True,
        )
        section.add(
            f"record update, {backend}: two writers on one record",
            costs.two_writers_per_s[backend],
            "updates/s",
            how=f"{2 * n} updates by two processes; {costs.retries[backend]:.2f} retries each",
        )
    costs.combine_results = plan.combine_results
    costs.combine_s = _combine(plan.combine_results)
    section.add(
        f"combining step, {plan.combine_results} chunk results",
        1e3 * costs.combine_s,
        "ms",
        how=f"median of {_COMBINE_REPEATS}: JSON, coverage check, exact sum, proof",
        key=True,
    )
    section.notes.append(
        f"Record updates: state's own `update` on a d=12 record whose ledger has {2 * n} chunks, each chunk started "
        f"and finished ({_WINDOW} at a time, finishing out of order) as worker/chunks.py does; files in a folder "
        "under /tmp (flock + atomic replace), Redis under a fresh prefix (WATCH/MULTI/EXEC)."
    )
    return costs
