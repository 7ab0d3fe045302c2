"""7. Soak: 50 connections on a mix of routes for SOAK_SECONDS while tasks run; errors and memory drift.

The soak is cut into equal segments (one wrk run each, back to back) so that throughput, latency
and every process's RSS can be followed over time: a leak shows as RSS climbing segment after
segment, a slowdown as req/s falling. The first segment is the warm-up against which the end is
compared. It runs on a product of its own over a fixed number of seeded tasks.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from datetime import UTC, datetime

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.load import LoadResult, Request, run_load, tool
from bench.report import Section
from bench.seed import seed_ids, seed_tasks
from bench.stack import queue_depth
from state.errors import UnknownTask
from state.files import FileStore
from state.records import SUCCESS

log = logging.getLogger(__name__)

TITLE = "7. Soak"

MAX_GROWTH = 0.10  # RSS may grow 10% after the warm-up segment (or 5 MB, for small processes)
MAX_GROWTH_MB = 5.0
_DRAIN_SECONDS = 120.0
# One cycle of the mix, for 64 tasks to read: 97.7% status reads, 1% listings, 1% host state and
# 0.25% task starts (d = 1..5): a few tasks a second, which the two worker processes keep up with.
_READ_WEIGHT = 30


def soak_mix(ids: list[str]) -> list[Request]:
    """The request mix: status reads of finished tasks, listings, the host route, small task starts."""
    mix = [Request("GET", f"/task/{task_id}", _READ_WEIGHT) for task_id in ids]
    mix += [
        Request("GET", "/alltasks?limit=100", 10),
        Request("GET", "/alltasks?limit=100&offset=500", 5),
        Request("GET", "/alltasks?limit=100&status=SUCCESS", 5),
        Request("GET", "/", 20),
    ]
    mix += [Request("POST", f"/calcpi/{d}") for d in range(1, 6)]
    return mix


def allowed_growth(base_mb: float) -> float:
    """How much RSS may grow over the soak without being called a leak."""
    return max(MAX_GROWTH * base_mb, MAX_GROWTH_MB)


def run(lab: Lab) -> Section:
    """Errors, throughput per segment and RSS drift of every process over the soak."""
    plan = lab.plan
    section = Section("soak", TITLE)
    seconds = max(1, plan.soak_seconds // plan.soak_segments)
    rows: list[dict[str, object]] = []
    results: list[LoadResult] = []
    errors = 0
    started = datetime.now(UTC)
    with lab.own_stack("soak", seed=lambda s: seed_tasks(s.state_dir, plan.soak_seed_tasks)) as stack:
        mix = soak_mix(seed_ids(stack.state_dir))
        rss = [lab.watch.now()]
        with lab.watch.phase("soak"):
            for i in range(plan.soak_segments):
                with cpu_use(stack) as cpu:
                    result = run_load(stack.api, mix, plan.soak_connections, seconds)
                results.append(result)
                rss.append(lab.watch.now())
                bad = result.unexpected()
                errors += bad
                rows.append(
                    {
                        "segment": i + 1,
                        **result.row(),
                        **cpu.columns(result.requests),
                        **{f"{k} MB": round(v, 1) for k, v in rss[-1].items()},
                    }
                )
                section.others.append(cpu.others * 100)
                log.info(
                    "soak segment %d/%d: %.0f req/s, p99 %.1f ms, %d errors",
                    i + 1,
                    plan.soak_segments,
                    result.rps,
                    result.p99_ms,
                    bad,
                )
        peaks = lab.watch.peak("soak")
        tasks = _tasks_since(stack, started)
    how = f"median of {len(results)} segments"
    section.add("errors (non-2xx, socket)", errors, "", target="0", passed=errors == 0, key=True)
    section.add("req/s", statistics.median(r.rps for r in results), "req/s", runs=[r.rps for r in results], how=how)
    section.add("p99", statistics.median(r.p99_ms for r in results), "ms", runs=[r.p99_ms for r in results], how=how)
    not_done = sum(n for status, n in tasks.items() if status != SUCCESS)
    section.add(
        "tasks started in the soak not SUCCESS",
        not_done,
        f"of {sum(tasks.values())}",
        target="0",
        passed=not_done == 0,
        key=True,
    )
    base, end = rss[1], rss[-1]  # after the warm-up segment, and at the end
    for role in sorted(end):
        if role not in base:
            continue
        growth = end[role] - base[role]
        limit = allowed_growth(base[role])
        section.add(
            f"{role}: RSS growth",
            growth,
            "MB",
            target=f"< {limit:.1f} MB",
            passed=growth < limit,
            runs=[r[role] for r in rss if role in r],
            how="end - after segment 1; runs: RSS at each boundary",
        )
    section.notes += [
        f"SOAK_SECONDS={plan.soak_seconds}: {plan.soak_segments} segments of {seconds} s, "
        f"{plan.soak_connections} connections, load by {tool()}, over {plan.soak_seed_tasks:,} seeded tasks plus "
        "those the soak starts.",
        "Mix per cycle: status reads of 64 finished tasks (97.7%), /alltasks first page, deep offset and status "
        "filter (1%), GET / (1%), POST /calcpi/1..5 (0.25%). Every answer must be 2xx.",
        f"RSS is read at the start and after every segment; growth is the end against the end of segment 1 (the "
        f"warm-up), allowed {MAX_GROWTH:.0%} or {MAX_GROWTH_MB:g} MB, whichever is larger.",
        f"After the load, the queue is given up to {_DRAIN_SECONDS:.0f} s to drain before the tasks the soak "
        "started are counted by status.",
    ]
    section.raw["segments"] = rows
    section.raw["RSS (MB)"] = [
        {"when": "before the soak", **{k: round(v, 1) for k, v in rss[0].items()}},
        {"when": "peak during the soak", **{k: round(v, 1) for k, v in peaks.items()}},
    ]
    section.raw["tasks started in the soak, by status"] = [dict(tasks)]
    return section


def _tasks_since(stack, since: datetime) -> Counter[str]:
    """Statuses of the tasks queued after `since`, once the queue has drained (bounded wait)."""
    deadline = time.monotonic() + _DRAIN_SECONDS
    while queue_depth(stack) and time.monotonic() < deadline:
        time.sleep(0.5)
    store = FileStore(stack.state_dir)
    counts: Counter[str] = Counter()
    pending_deadline = time.monotonic() + 10
    for task_id in store.iter_task_ids():
        try:
            state = store.read(task_id)
        except UnknownTask:  # removed meanwhile
            continue
        if datetime.fromisoformat(state.pushqtime) < since:
            continue
        # A task taken just before the queue emptied may still be running: give it a moment.
        while not state.is_final and time.monotonic() < pending_deadline:
            time.sleep(0.1)
            state = store.read(state.id)
        counts[state.status] += 1
    return counts
