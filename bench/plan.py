"""How much of each benchmark to run: the full sizes for BENCHMARKS.md, or tiny ones for a CI smoke run.

All sizes live here so that `--quick` changes the amount of work, never the code path: the smoke
test then exercises exactly what `make bench` runs (split calculations included: quick runs cut
small decimals into many small chunks, with the same settings a big one uses by default).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Quick runs split small calculations: d = 7..9 need 2.8e8 to 1.1e10 terms.
_QUICK_SPLIT = {"SPLIT_MIN_TERMS": str(10**6), "SPLIT_CHUNK_TERMS": str(5 * 10**7)}


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
    # 3. status reads: connections, seconds per load run, runs per (variant, route) at the largest
    # connection count (the judged one) and at the others (the shape of the curve).
    connections: tuple[int, ...]
    http_seconds: int
    http_runs: int
    curve_runs: int
    # 4. listing: tasks in the store, and timed requests per (size, query).
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
    # 8. Redis memory: tasks written per measurement, measurements per kind (ended, waiting).
    memory_tasks: int
    memory_repeats: int
    # 9. split calculations: the decimal run on one process and on two (runs each), the decimal whose
    # split and unsplit paths are compared (runs each), chords of empty-ish chunks (chunk counts, runs),
    # record updates timed per backend, chunk results combined; 10. the long decimal on two processes.
    split_decimal: int
    split_runs: int
    overhead_decimal: int
    overhead_runs: int
    chord_chunks: tuple[int, ...]
    chord_runs: int
    record_updates: int
    combine_results: int
    split_long_decimal: int
    split_env: dict[str, str] = field(default_factory=dict)  # settings of every split product


def full_plan(soak_seconds: int) -> Plan:
    """The sizes behind BENCHMARKS.md (about 14 minutes without the soak and the long split on 2 cores)."""
    return Plan(
        quick=False,
        kernel_terms=4 * 10**9,
        loop_terms=2 * 10**6,
        kernel_runs=5,
        decimals=tuple(range(1, 11)),
        digits_runs=7,
        digits_runs_long=3,
        long_decimal=9,
        poll_interval=0.002,
        connections=(1, 10, 50),
        http_seconds=4,
        http_runs=4,
        curve_runs=2,
        listing_sizes=(1_000, 10_000, 100_000),
        listing_runs=5,
        enqueue_connections=10,
        enqueue_seconds=4,
        enqueue_runs=3,
        soak_seconds=soak_seconds,
        soak_segments=5,
        soak_connections=50,
        soak_seed_tasks=1_000,
        memory_tasks=10_000,
        memory_repeats=3,
        split_decimal=11,
        split_runs=3,
        overhead_decimal=9,
        overhead_runs=4,
        chord_chunks=(100, 900),
        chord_runs=3,
        record_updates=400,
        combine_results=900,
        split_long_decimal=12,
    )


def quick_plan(soak_seconds: int) -> Plan:
    """Tiny sizes for a functional smoke run: every section, a few seconds each; figures mean little."""
    return Plan(
        quick=True,
        kernel_terms=10**8,
        loop_terms=10**5,
        kernel_runs=3,
        decimals=tuple(range(1, 7)),
        digits_runs=3,
        digits_runs_long=3,
        long_decimal=9,
        poll_interval=0.002,
        connections=(1, 10, 50),
        http_seconds=1,
        http_runs=2,
        curve_runs=1,
        listing_sizes=(100, 1_000),
        listing_runs=3,
        enqueue_connections=10,
        enqueue_seconds=1,
        enqueue_runs=2,
        soak_seconds=soak_seconds,
        soak_segments=3,
        soak_connections=50,
        soak_seed_tasks=100,
        memory_tasks=200,
        memory_repeats=1,
        split_decimal=8,
        split_runs=1,
        overhead_decimal=7,
        overhead_runs=1,
        chord_chunks=(10, 40),
        chord_runs=1,
        record_updates=30,
        combine_results=50,
        split_long_decimal=9,
        split_env=dict(_QUICK_SPLIT),
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
