"""8. Redis memory per task: INFO memory's used_memory before and after writing N tasks through the
product's own store (state.redis_store.RedisStore.write: the document and its sorted sets, one
MULTI/EXEC each), under a fresh key prefix, for ended (SUCCESS) and waiting tasks; and what each part
costs (MEMORY USAGE of the documents and of each sorted set).

The machine's Redis is shared: another process writing meanwhile would show as ours. Each kind is
measured `memory_repeats` times, the kinds alternating, and the median taken; the parts, measured
on our own keys only, must add up to about the same figure.
"""

from __future__ import annotations

import logging
import os
import statistics
import uuid

import redis

from bench.lab import Lab
from bench.report import Section
from bench.seed import seeded, used_memory
from state.records import SUCCESS, WAITING
from state.redis_store import RedisStore

log = logging.getLogger(__name__)

TITLE = "8. Redis memory per task"
MAX_BYTES = 1024
_SAMPLE = 200
KINDS = {"ended": SUCCESS, "waiting": WAITING}


def _parts(client: redis.Redis, store: RedisStore, ids: list[str], count: int) -> dict[str, float]:
    """Bytes per task of each part: the document (and its key), and each sorted set's entry."""
    sample = ids[:_SAMPLE]
    docs = [client.memory_usage(store.keys.task(t), samples=0) or 0 for t in sample]
    parts = {"document and key": statistics.mean(docs) if docs else 0.0}
    for key in store.keys.sets():
        if client.exists(key):
            short = key.removeprefix(store.keys.prefix)
            parts[f"sorted set {short}"] = (client.memory_usage(key, samples=0) or 0) / count
    return parts


def measure(url: str, kind: str, count: int, seed: int) -> tuple[float, dict[str, float], int]:
    """Bytes of used_memory per task after writing `count` tasks of `kind`; the parts; the document's length."""
    client = redis.Redis.from_url(url, socket_timeout=30)
    store = RedisStore(client, f"bench-mem-{uuid.uuid4().hex[:12]}:", url)
    ids: list[str] = []
    try:
        before = used_memory(client)
        for state in seeded(count, seed, KINDS[kind]):
            store.write(state)
            ids.append(state.id)
        after = used_memory(client)
        parts = _parts(client, store, ids, count)
        length = len(client.get(store.keys.task(ids[0])) or b"")
        return (after - before) / count, parts, length
    finally:
        keys = [store.keys.task(t) for t in ids] + list(store.keys.sets())
        for i in range(0, len(keys), 1000):
            client.delete(*keys[i : i + 1000])
        client.close()


def run(lab: Lab) -> Section:
    """Median bytes per ended and per waiting task, and the parts of an ended one."""
    plan = lab.plan
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    section = Section("redis-memory", TITLE)
    per_task: dict[str, list[float]] = {kind: [] for kind in KINDS}
    parts: dict[str, list[dict[str, float]]] = {kind: [] for kind in KINDS}
    rows: list[dict[str, object]] = []
    kinds = list(KINDS)
    for i in range(plan.memory_repeats):
        for kind in kinds if i % 2 == 0 else kinds[::-1]:
            value, found, length = measure(url, kind, plan.memory_tasks, 1000 + i)
            per_task[kind].append(value)
            parts[kind].append(found)
            rows.append(
                {
                    "run": i + 1,
                    "kind": kind,
                    "tasks": plan.memory_tasks,
                    "bytes per task": round(value, 1),
                    "document bytes": length,
                    **{k: round(v, 1) for k, v in found.items()},
                }
            )
            log.info("Redis memory, %s tasks, run %d: %.0f bytes a task", kind, i + 1, value)
    for kind, values in per_task.items():
        value = statistics.median(values)
        judged = kind == "ended"
        section.add(
            f"{kind} task: used_memory per task",
            value,
            "bytes",
            target=f"< {MAX_BYTES:,} bytes" if judged else "",
            passed=(value < MAX_BYTES) if judged else None,
            runs=values,
            how=f"median of {len(values)}; {plan.memory_tasks:,} tasks each",
            key=True,
        )
        names = list(dict.fromkeys(k for p in parts[kind] for k in p))
        for name in names:
            section.add(
                f"{kind} task: {name}",
                statistics.median(p.get(name, 0.0) for p in parts[kind]),
                "bytes",
                how="MEMORY USAGE (samples 0): documents averaged over a sample, sets / tasks",
            )
    section.notes += [
        f"Redis at {url.split('@')[-1]} (shared with whatever else uses it): {plan.memory_tasks:,} tasks written one "
        "at a time with RedisStore.write under a fresh prefix, used_memory read before and after, keys deleted "
        f"after; {plan.memory_repeats} measurements per kind, alternating. Ended tasks are SUCCESS records as the "
        "worker writes them (times, digits, terms, host); waiting ones as the Thrift server writes them.",
        "An ended task is a document (its JSON, a few hundred bytes, plus the key) and an entry in three sorted sets "
        "(all tasks, its status, ended); a waiting one in two (all tasks, its status). Once a sorted set holds more "
        "than 128 entries Redis keeps it as a skip list plus a hash table: about 100 bytes an entry.",
    ]
    section.raw["every measurement"] = rows
    return section
