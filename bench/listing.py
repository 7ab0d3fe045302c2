"""4. Listing: GET /alltasks?limit=100 with 1,000 / 10,000 / 100,000 tasks on disk, and the tserver's RSS.

Each size gets a product of its own whose state folder is filled before it starts (a server that
indexes at start-up is measured as it would really run). Three queries: the first page, a page
90% deep, and a status filter; sequential requests on one connection, so the figure is the
latency of one page, not a queueing effect.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.lab import Lab
from bench.report import Section
from bench.seed import seed_tasks
from bench.stack import StackError, StackTimeout
from state.files_schema import CACHE_KIB
from state.records import FAILURE

log = logging.getLogger(__name__)

TITLE = "4. Listing /alltasks"

MAX_MS = 20.0
MAX_GROWTH_MB = 5.0
_CACHE_MIB = CACHE_KIB / 1024
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
    """What one size measured."""

    size: int
    times: dict[str, list[float]]
    rows: list[dict[str, object]]
    memory: dict[str, object]
    peak_mb: float
    bad: list[str] = field(default_factory=list)


def measure_size(lab: Lab, size: int) -> SizeResult:
    """A fresh product over `size` seeded tasks; timed listings and the tserver's memory."""
    counts: Counter[str] = Counter()

    def seed(folder: Path) -> None:
        log.info("listing: writing %d task files", size)
        counts.update(seed_tasks(folder, size))

    times: dict[str, list[float]] = {name: [] for name in queries(size)}
    rows: list[dict[str, object]] = []
    bad: list[str] = []
    phase = f"listing {size}"
    with lab.own_stack(f"listing-{size}", seed=seed) as stack, httpx.Client(timeout=30) as client:
        idle = lab.watch.now().get("tserver", 0.0)
        with lab.watch.phase(phase):
            client.get(stack.api + queries(size)["first page"])  # warm-up, not counted
            for i in range(lab.plan.listing_runs):
                for name, query in queries(size).items():
                    start = time.perf_counter()
                    r = client.get(stack.api + query)
                    ms = (time.perf_counter() - start) * 1e3
                    times[name].append(ms)
                    total = r.headers.get("x-total-count", "")
                    rows.append({"tasks": size, "query": name, "run": i + 1, "ms": round(ms, 2),
                                 "status": r.status_code, "X-Total-Count": total,
                                 "items": len(r.json()) if r.status_code == 200 else 0})
                    if r.status_code != 200 or not total:
                        bad.append(f"{size} tasks, {name}: HTTP {r.status_code} {r.text[:120]}")
        peak = lab.watch.peak(phase).get("tserver", 0.0)
        after = lab.watch.now().get("tserver", 0.0)
    memory = {"tasks": size, "tserver RSS idle MB": round(idle, 1), "peak while listing MB": round(peak, 1),
              "after MB": round(after, 1), "seeded": dict(counts)}
    return SizeResult(size, times, rows, memory, peak, bad)


def run(lab: Lab) -> Section:
    """Median page latency per size and query, and the tserver's memory at each size."""
    plan = lab.plan
    section = Section("listing", TITLE)
    largest, smallest = max(plan.listing_sizes), min(plan.listing_sizes)
    how = f"median of {plan.listing_runs}"
    results: list[SizeResult] = []
    for size in plan.listing_sizes:
        try:
            results.append(measure_size(lab, size))
        except (StackError, StackTimeout, httpx.HTTPError) as exc:
            # One size that cannot be measured must not cost the others their figures.
            log.error("listing with %d tasks failed: %s", size, exc)
            section.notes.append(f"{size:,} tasks: not measured: {exc}")
            section.add(f"{size:,} tasks: first page", None, "ms", target=f"< {MAX_MS:g} ms" if size == largest else "",
                        passed=False if size == largest else None)
    for res in results:
        judged = res.size == largest
        for name, values in res.times.items():
            value = statistics.median(values)
            log.info("listing %d tasks, %s: median %.1f ms", res.size, name, value)
            section.add(f"{res.size:,} tasks: {name}", value, "ms", target=f"< {MAX_MS:g} ms" if judged else "",
                        passed=(value < MAX_MS and not res.bad) if judged else None, runs=values, how=how)
        section.add(f"{res.size:,} tasks: tserver peak RSS", res.peak_mb, "MB", how="max of 100 ms samples")
    peaks = {r.size: r.peak_mb for r in results}
    growth = peaks[largest] - peaks[smallest] if largest in peaks and smallest in peaks else None
    section.add(f"tserver RSS growth {smallest:,} -> {largest:,} tasks", growth, "MB",
                target=f"< {MAX_GROWTH_MB:g} MB", passed=None if growth is None else growth < MAX_GROWTH_MB,
                how="difference of the peaks above")
    if growth is not None:
        per_task = growth * 1e6 / (largest - smallest)
        section.add("tserver RSS per task on disk", per_task, "bytes", how="growth / tasks added")
    section.notes += [
        "Task files written with state.files.FileStore before the product starts (90% SUCCESS, 5% FAILURE, "
        "3% WAITING, 2% PROGRESS, shuffled); a fresh product per size. One warm-up request, then "
        f"{plan.listing_runs} rounds of the three queries, one at a time on one keep-alive connection.",
        "The product adds one task of its own at start-up (the readiness check of testing/stack.py).",
        "\"Memory that does not grow with the number of tasks\": the index is a private SQLite file with a "
        f"{_CACHE_MIB:g} MiB page cache (tserver/index.py), so the tserver keeps nothing per task in memory; the "
        f"growth target of {MAX_GROWTH_MB:g} MB is that cache plus allocator slack. The in-memory index this "
        "replaced held ~500 bytes a task (51 MB at 100,000).",
    ]
    section.notes += [f"unexpected answer: {b}" for r in results for b in r.bad]
    section.raw["every request"] = [row for r in results for row in r.rows]
    section.raw["tserver memory by size"] = [r.memory for r in results]
    return section
