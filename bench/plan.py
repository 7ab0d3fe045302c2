"""How much of each benchmark to run: the full sizes for BENCHMARKS.md, or tiny ones for a CI smoke run.

All sizes live here so that `--quick` changes the amount of work, never the code path: the smoke
test then exercises exactly what `make bench` runs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes, repetitions and durations of one bench invocation."""

    quick: bool
    # 1. kernel: series terms per timed run of the C kernel and of the Python loop (same run).
    kernel_terms: int
    loop_terms: int
    kernel_runs: int
    # 2. digits: decimals measured, runs each, fewer for the slow ones (>= long_decimal).
    decimals: tuple[int, ...]
    digits_runs: int
    digits_runs_long: int
    long_decimal: int
    poll_interval: float
    # 3. status reads: connections, seconds per load run, runs per (route, connections).
    connections: tuple[int, ...]
    http_seconds: int
    http_runs: int
    # 4. listing: tasks on disk, and timed requests per (size, query).
    listing_sizes: tuple[int, ...]
    listing_runs: int
    # 5. enqueue.
    enqueue_connections: int
    enqueue_seconds: int
    enqueue_runs: int
    # 7. soak: total seconds, split into equal segments (a figure per segment shows drift).
    soak_seconds: int
    soak_segments: int
    soak_connections: int
    soak_seed_tasks: int


def full_plan(soak_seconds: int) -> Plan:
    """The sizes behind BENCHMARKS.md (about 5 minutes without the soak on 2 cores)."""
    return Plan(
        quick=False,
        kernel_terms=4 * 10**9, loop_terms=2 * 10**6, kernel_runs=5,
        decimals=tuple(range(1, 11)), digits_runs=7, digits_runs_long=3, long_decimal=9, poll_interval=0.002,
        connections=(1, 10, 50), http_seconds=4, http_runs=5,
        listing_sizes=(1_000, 10_000, 100_000), listing_runs=5,
        enqueue_connections=10, enqueue_seconds=4, enqueue_runs=3,
        soak_seconds=soak_seconds, soak_segments=5, soak_connections=50, soak_seed_tasks=1_000,
    )


def quick_plan(soak_seconds: int) -> Plan:
    """Tiny sizes for a functional smoke run: every section, a few seconds each; figures mean little."""
    return Plan(
        quick=True,
        kernel_terms=10**8, loop_terms=10**5, kernel_runs=3,
        decimals=tuple(range(1, 7)), digits_runs=3, digits_runs_long=3, long_decimal=9, poll_interval=0.002,
        connections=(1, 10, 50), http_seconds=1, http_runs=3,
        listing_sizes=(100, 1_000), listing_runs=3,
        enqueue_connections=10, enqueue_seconds=1, enqueue_runs=3,
        soak_seconds=soak_seconds, soak_segments=3, soak_connections=50, soak_seed_tasks=100,
    )


def plan_from_env(quick: bool) -> Plan:
    """The plan for --quick or BENCH_QUICK=1, with SOAK_SECONDS taken from the environment."""
    quick = quick or os.environ.get("BENCH_QUICK", "") not in ("", "0")
    default_soak = 10 if quick else 300
    raw = os.environ.get("SOAK_SECONDS", "")
    try:
        soak = int(raw) if raw else default_soak
    except ValueError:
        raise SystemExit(f"SOAK_SECONDS must be a whole number of seconds, got {raw!r}") from None
    if not 2 <= soak <= 3600:
        raise SystemExit(f"SOAK_SECONDS must be from 2 to 3600, got {soak}")
    return quick_plan(soak) if quick else full_plan(soak)
