"""1. The Leibniz kernel on one core: worker.leibniz.kernel_rate beside the original's Python loop.

Both run in this process, pinned to one CPU, alternating run by run so that a change of clock or a
noisy neighbour hits both sides alike; no product is running meanwhile.
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager

from bench.lab import Lab
from bench.report import Section
from worker.leibniz import kernel_rate, python_loop_sum

log = logging.getLogger(__name__)

TITLE = "1. Leibniz kernel (one core)"

MIN_RATE = 5e8
MIN_SPEEDUP = 100.0


@contextmanager
def one_core() -> Iterator[int]:
    """Pin the calling thread to the last CPU for the block (the kernel's pair_sum is single-threaded
    anyway; pinning makes that a fact of the measurement rather than an assumption)."""
    before = os.sched_getaffinity(0)
    cpu = max(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


def _sci(x: float) -> str:
    return f"{x:.0e}".replace("e+0", "e").replace("e+", "e")


def loop_rate(terms: int) -> float:
    """Terms per second of the original's Python loop over `terms` terms."""
    start = time.perf_counter()
    python_loop_sum(terms)
    return terms / (time.perf_counter() - start)


def run(lab: Lab) -> Section:
    """Kernel and loop rates, and their ratio, each the median of plan.kernel_runs runs."""
    plan = lab.plan
    lab.close_shared()
    section = Section("kernel", TITLE)
    kernel, loop = [], []
    with one_core() as cpu:
        kernel_rate(10**7)  # first call: page in the extension, wake the CPU up
        loop_rate(10**4)
        for i in range(plan.kernel_runs):
            loop.append(loop_rate(plan.loop_terms))
            kernel.append(kernel_rate(plan.kernel_terms))
            log.info(
                "kernel run %d/%d: C %.3g terms/s, Python loop %.3g terms/s",
                i + 1,
                plan.kernel_runs,
                kernel[-1],
                loop[-1],
            )
    k, p = statistics.median(kernel), statistics.median(loop)
    how = f"median of {plan.kernel_runs}"
    section.add(
        "C kernel", k, "terms/s", target=f">= {_sci(MIN_RATE)}", passed=k >= MIN_RATE, runs=kernel, how=how, key=True
    )
    section.add("Python loop (baseline)", p, "terms/s", runs=loop, how=how)
    ratios = [a / b for a, b in zip(kernel, loop, strict=True)]
    section.add(
        "speed-up, C / Python",
        k / p,
        "x",
        target=f">= {MIN_SPEEDUP:.0f}x",
        passed=k / p >= MIN_SPEEDUP,
        runs=ratios,
        how="ratio of the medians; runs: per-run ratios",
        key=True,
    )
    section.notes += [
        f"Pinned to CPU {cpu}; C kernel over {_sci(plan.kernel_terms)} terms per run "
        f"(`worker.leibniz.kernel_rate`), Python loop over {_sci(plan.loop_terms)} terms per run "
        "(`worker.leibniz.python_loop_sum`, the original's `pow(-1, i)` loop), alternating.",
    ]
    return section
