"""4. Listing: GET /alltasks?limit=100 with 1,000 / 10,000 / 100,000 tasks in the store, every variant
side by side, and the Thrift server's RSS at each size.

Each size gets a product per variant whose store is filled before it starts (a files server that
indexes at start-up is measured as it would really run). Three queries: the first page, a page 90%
deep, and a status filter; sequential requests on one connection, so the figure is the latency of
one page, not a queueing effect; the variants take turns query by query.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx

from bench.lab import Lab, StackSpec
from bench.report import Section
from bench.seed import seed_redis, seed_tasks
from bench.stack import StackError, StackTimeout
from state.files_schema import CACHE_KIB
from state.records import FAILURE
from testing.stack import Stack

log = logging.getLogger(__name__)

TITLE = "4. Listing /alltasks"

MAX_MS = 20.0
MAX_FLATNESS = 1.5
MAX_GROWTH_MB = 5.0
PAGE = 100


def queries(size: int) -> dict[str, str]:
    """The three listings measured at each size."""
    return {
        "first page": f"/alltasks?limit={PAGE}",
        "offset 90%": f"/alltasks?limit={PAGE}&offset={size * 9 // 10}",
        f"status={FAILURE}": f"/alltasks?limit={PAGE}&status={FAILURE}",
    }


@dataclass
class SizeResult:
    """What one size measured, every variant."""

    size: int
    times: dict[tuple[str, str], list[float]] = field(default_factory=dict)  # (variant, query) -> ms
    peak_mb: dict[str, float] = field(default_factory=dict)  # variant -> tserver peak RSS
    memory: list[dict[str, object]] = field(default_factory=list)
    redis_bytes: dict[str, int] = field(default_factory=dict)  # variant -> used_memory growth while seeding
    rows: list[dict[str, object]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)


def measure_size(lab: Lab, size: int) -> SizeResult:
    """Fresh products over `size` seeded tasks; timed listings and the tserver's memory."""
    res = SizeResult(size)
    counts: dict[str, Counter[str]] = {}

    def seeder(name: str):
        def seed(stack: Stack) -> None:
            log.info("listing: writing %d tasks (%s)", size, name)
            if stack.state_backend == "redis":
                counts[name], res.redis_bytes[name] = seed_redis(stack, size)
            else:
                counts[name] = seed_tasks(stack.state_dir, size)

        return seed

    specs = {v.name: StackSpec(v.backend, v.env, seeder(v.name)) for v in lab.variants}
    phase = f"listing {size}"
    with lab.own_stacks(f"listing-{size}", specs) as stacks, httpx.Client(timeout=30) as client:
        idle = lab.watch.now()
        with lab.watch.phase(phase):
            for stack in stacks.values():
                client.get(stack.api + queries(size)["first page"])  # warm-up, not counted
            names = list(stacks)
            for i in range(lab.plan.listing_runs):
                for query_name, query in queries(size).items():
                    for name in names if i % 2 == 0 else names[::-1]:
                        start = time.perf_counter()
                        r = client.get(stacks[name].api + query)
                        ms = (time.perf_counter() - start) * 1e3
                        res.times.setdefault((name, query_name), []).append(ms)
                        total = r.headers.get("x-total-count", "")
                        res.rows.append(
                            {
                                "variant": name,
                                "tasks": size,
                                "query": query_name,
                                "run": i + 1,
                                "ms": round(ms, 2),
                                "status": r.status_code,
                                "X-Total-Count": total,
                                "items": len(r.json()) if r.status_code == 200 else 0,
                            }
                        )
                        if r.status_code != 200 or not total:
                            res.bad.append(f"{name}, {size} tasks, {query_name}: HTTP {r.status_code} {r.text[:120]}")
        peaks, after = lab.watch.peak(phase), lab.watch.now()
    for name in names:
        role = f"tserver ({name})"
        res.peak_mb[name] = peaks.get(role, 0.0)
        res.memory.append(
            {
                "variant": name,
                "tasks": size,
                "tserver RSS idle MB": round(idle.get(role, 0.0), 1),
                "peak while listing MB": round(res.peak_mb[name], 1),
                "after MB": round(after.get(role, 0.0), 1),
                "seeded": dict(counts.get(name, {})),
                "Redis used_memory growth while seeding MB": round(res.redis_bytes.get(name, 0) / 1e6, 2),
            }
        )
    return res


def run(lab: Lab) -> Section:
    """Median page latency per variant, size and query; flatness and the tserver's memory."""
    plan = lab.plan
    section = Section("listing", TITLE)
    sizes = sorted(plan.listing_sizes)
    largest, smallest = sizes[-1], sizes[0]
    judged = set(sizes[-2:])
    results: dict[int, SizeResult] = {}
    for size in sizes:
        try:
            results[size] = measure_size(lab, size)
        except (StackError, StackTimeout, httpx.HTTPError) as exc:
            # One size that cannot be measured must not cost the others their figures.
            log.error("listing with %d tasks failed: %s", size, exc)
            section.notes.append(f"{size:,} tasks: not measured: {exc}")
            section.add(f"{size:,} tasks", None, "ms", target=f"< {MAX_MS:g} ms", passed=False)
    for v in lab.variants:
        for size, res in results.items():
            for query in queries(size):
                values = res.times[v.name, query]
                value = statistics.median(values)
                check = size in judged
                section.add(
                    f"{v.name}, {size:,} tasks: {query}",
                    value,
                    "ms",
                    target=f"< {MAX_MS:g} ms" if check else "",
                    passed=(value < MAX_MS and not res.bad) if check else None,
                    runs=values,
                    how=f"median of {len(values)}",
                    key=size == largest and query == "first page",
                )
        if all(s in results for s in judged) and len(judged) == 2:
            low, high = sorted(judged)
            flat = statistics.median(results[high].times[v.name, "first page"]) / statistics.median(
                results[low].times[v.name, "first page"]
            )
            section.add(
                f"{v.name}: first page at {high:,} / at {low:,} tasks",
                flat,
                "x",
                target=f"<= {MAX_FLATNESS}x",
                passed=flat <= MAX_FLATNESS,
                key=True,
                how="ratio of the medians",
            )
        peaks = {size: res.peak_mb[v.name] for size, res in results.items()}
        for size, mb in peaks.items():
            section.add(f"{v.name}, {size:,} tasks: tserver peak RSS", mb, "MB", how="max of 100 ms samples")
        if largest in peaks and smallest in peaks:
            growth = peaks[largest] - peaks[smallest]
            section.add(
                f"{v.name}: tserver RSS growth {smallest:,} -> {largest:,} tasks",
                growth,
                "MB",
                target=f"< {MAX_GROWTH_MB:g} MB",
                passed=growth < MAX_GROWTH_MB,
                key=True,
                how="difference of the peaks above",
            )
        if largest in results and v.name in results[largest].redis_bytes:
            per_task = results[largest].redis_bytes[v.name] / largest
            section.add(
                f"{v.name}: Redis memory per seeded task (the listing's mix)",
                per_task,
                "bytes",
                how="used_memory growth while seeding / tasks (a shared Redis: others' keys count too)",
            )
    section.notes += [
        "Variants side by side: " + "; ".join(v.describe() for v in lab.variants) + ".",
        "Tasks written with the product's own store code before the products start (90% SUCCESS, 5% FAILURE, 3% "
        "WAITING, 2% PROGRESS, shuffled); fresh products per size. One warm-up request each, then "
        f"{plan.listing_runs} rounds of the three queries, one at a time on one keep-alive connection, the "
        "variants taking turns.",
        f"Targets: a page < {MAX_MS:g} ms at the two largest sizes; the first page at the largest within "
        f"{MAX_FLATNESS}x of the next size (flat cost); tserver RSS growth < {MAX_GROWTH_MB:g} MB from the "
        f"smallest size to the largest (files: a private SQLite index with a {CACHE_KIB / 1024:g} MiB page cache; "
        "Redis: sorted sets in Redis, nothing per task in the tserver).",
    ]
    section.notes += [f"unexpected answer: {b}" for r in results.values() for b in r.bad]
    section.raw["every request"] = [row for r in results.values() for row in r.rows]
    section.raw["tserver memory by size"] = [m for r in results.values() for m in r.memory]
    return section
