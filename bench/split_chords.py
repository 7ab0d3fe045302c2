"""What a chunk costs besides its sum: chords of empty-ish chunks through the real product.

With SPLIT_MIN_TERMS tiny and chunks of a few thousand pairs (microseconds of summing), d = 5 and
d = 6 are cut into two chord sizes (by default 100 and 900 chunks, d = 12's count): the difference of
their times and of every program's CPU, divided by the difference of their chunk counts, is the cost
of one chunk (its message sent by the launching process, delivered by RabbitMQ, run, its two record
updates, its result stored and counted into the chord), and what is left the fixed cost of a split
task (plan, chord set-up and join, combining step, the final record). Both backends side by side on
two worker processes, runs alternating.
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field

from bench.cpu import cpu_use
from bench.lab import Lab, StackSpec
from bench.load import alternating
from bench.report import Section
from bench.splitrun import SplitError, aggregate, run_task, split_env
from worker import split

log = logging.getLogger(__name__)

SMALL_DECIMAL, BIG_DECIMAL = 5, 6
PROGRAMS = ("worker", "chunks", "RabbitMQ", "Redis", "tserver")


@dataclass
class ChordCosts:
    """Per backend: seconds per chunk (wall, on two processes), fixed seconds, CPU ms per chunk by program."""

    chunks: tuple[int, int] = (0, 0)
    per_chunk_s: dict[str, float] = field(default_factory=dict)
    fixed_s: dict[str, float] = field(default_factory=dict)
    cpu_ms: dict[str, dict[str, float]] = field(default_factory=dict)


def settings(small: int, big: int) -> dict[str, str]:
    """Split settings that cut d=5 into `small` chunks and d=6 into `big` (both as small as can be)."""
    head = split.plan(SMALL_DECIMAL, 1, 2, 1)
    assert head is not None
    pairs = head.end - head.start
    return {
        "SPLIT_MIN_TERMS": "1000",
        "SPLIT_CHUNK_TERMS": str(2 * math.ceil(pairs / small)),
        "SPLIT_MAX_CHUNKS": str(big),
        "WORKER_CONCURRENCY": "2",
    }


def measure(lab: Lab, section: Section, rows: list[dict[str, object]]) -> ChordCosts:
    """Time and CPU of both chord sizes on both backends; the costs per chunk and fixed."""
    plan = lab.plan
    small, big = plan.chord_chunks
    env = split_env(settings(small, big))
    specs = {backend: StackSpec(backend, env) for backend in ("files", "redis")}
    samples: dict[tuple[str, int], list[tuple[float, int, dict[str, float]]]] = {}
    costs = ChordCosts()
    try:
        with lab.own_stacks("chords", specs) as stacks, lab.watch.phase("chords"):
            jobs = [f"{b}|{d}" for b in stacks for d in (SMALL_DECIMAL, BIG_DECIMAL)]
            for i, order in enumerate(alternating(jobs, plan.chord_runs)):
                for job in order:
                    backend, decimal = job.split("|")[0], int(job.split("|")[1])
                    with cpu_use(stacks[backend], lab.running()) as cpu:
                        row = run_task(stacks[backend].api, decimal, 300, 0.02)
                    cpu_s = aggregate(cpu.by_role)
                    samples.setdefault((backend, decimal), []).append(
                        (float(row["record s"]), int(row["chunks"]), cpu_s)
                    )
                    rows.append(
                        {
                            "products": "chords",
                            "variant": backend,
                            "run": i + 1,
                            **row,
                            **{f"{p} CPU s": round(cpu_s.get(p, 0.0), 3) for p in PROGRAMS},
                        }
                    )
                    log.info("chord of %d chunks on %s: %.2f s", row["chunks"], backend, row["record s"])
    except SplitError as exc:
        section.notes.append(f"chords of empty-ish chunks not measured: {exc}")
        return costs
    for backend in specs:
        lo, hi = samples[backend, SMALL_DECIMAL], samples[backend, BIG_DECIMAL]
        n_lo, n_hi = lo[0][1], hi[0][1]
        costs.chunks = (n_lo, n_hi)
        t_lo, t_hi = statistics.median(s[0] for s in lo), statistics.median(s[0] for s in hi)
        slope = (t_hi - t_lo) / (n_hi - n_lo)
        costs.per_chunk_s[backend] = slope
        costs.fixed_s[backend] = t_lo - slope * n_lo
        costs.cpu_ms[backend] = {
            p: 1e3
            * (statistics.median(s[2].get(p, 0.0) for s in hi) - statistics.median(s[2].get(p, 0.0) for s in lo))
            / (n_hi - n_lo)
            for p in PROGRAMS
        }
        how = f"medians of {len(hi)}, chords of {n_lo} and {n_hi} empty-ish chunks"
        section.add(
            f"chord, {backend}: {n_hi} empty-ish chunks on 2 processes",
            t_hi,
            "s",
            runs=[s[0] for s in hi],
            how=f"median of {len(hi)}",
        )
        section.add(
            f"chord, {backend}: time per chunk (2 processes)",
            1e3 * slope,
            "ms",
            how=f"slope; {how}",
            key=backend == "redis",
        )
        section.add(
            f"chord, {backend}: fixed time of a split task", costs.fixed_s[backend], "s", how=f"intercept; {how}"
        )
        for program, ms in costs.cpu_ms[backend].items():
            section.add(f"chord, {backend}: {program} CPU per chunk", ms, "ms", how=f"slope of CPU; {how}")
    section.notes.append(
        f"Chords of empty-ish chunks: SPLIT_MIN_TERMS=1000, SPLIT_CHUNK_TERMS={env['SPLIT_CHUNK_TERMS']}, "
        f"SPLIT_MAX_CHUNKS={big}: d={SMALL_DECIMAL} makes {costs.chunks[0]} chunks, d={BIG_DECIMAL} {costs.chunks[1]} "
        f"(each sums a few thousand pairs: microseconds); WORKER_CONCURRENCY=2; {plan.chord_runs} runs each, "
        "both backends side by side. RabbitMQ and Redis are the machine's, shared with the product's other traffic."
    )
    return costs
