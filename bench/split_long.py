"""10. The longest calculation on this machine: d = 12 split over two worker processes, run once.

About 3.6e12 terms: minutes, so it has a target of its own (`make bench-long`, `python -m bench
--only split-long`) rather than a place in `make bench`. One product of the files backend (the
default) with WORKER_CONCURRENCY=2; the figure is the task's own queued -> stopped time, and its
digits must be pi's.
"""

from __future__ import annotations

import logging

from bench.cpu import cpu_use
from bench.lab import Lab, StackSpec
from bench.report import Section
from bench.splitrun import aggregate, run_task, split_env

log = logging.getLogger(__name__)

TITLE = "10. Split d = 12 on two processes (long)"
_TIMEOUT = 3 * 3600


def run(lab: Lab) -> Section:
    """One d = 12 task on two processes: its time, chunks, CPU by program."""
    plan = lab.plan
    d = plan.split_long_decimal
    section = Section("split-long", TITLE)
    specs = {"2 processes": StackSpec("files", split_env(plan.split_env, WORKER_CONCURRENCY="2"))}
    with lab.own_stacks("split-long", specs) as stacks, lab.watch.phase("split-long"):
        stack = stacks["2 processes"]
        with cpu_use(stack, lab.running()) as cpu:
            row = run_task(stack.api, d, _TIMEOUT, 0.5)
    seconds = float(row["record s"])
    section.others.append(cpu.others * 100)
    section.add(f"d={d}, 2 processes", seconds, "s", how="one run: the task's queued -> stopped", key=True)
    section.add(f"d={d}: chunks", int(row["chunks"]), "")
    section.add(f"d={d}: terms per second", int(row["terms"]) / seconds, "terms/s", how="terms / time")
    by_program = aggregate(cpu.by_role)
    busy = by_program.get("chunks", 0.0)
    section.add(
        f"d={d}: chunk processes busy",
        100 * busy / (2 * seconds),
        "%",
        how="CPU of the chunks program / (2 processes x time)",
    )
    section.notes += [
        "One product, files backend, WORKER_CONCURRENCY=2, MAX_DECIMAL=12"
        + "".join(f", {k}={v}" for k, v in plan.split_env.items())
        + f"; digits {row['digits']} (pi's), {row['chunks']} chunks, attempts {row['attempts']}.",
        "CPU seconds by program over the run: " + ", ".join(f"{k} {v:.1f}" for k, v in sorted(by_program.items())),
        f"Other processes took {cpu.others:.0%} of the cores meanwhile.",
    ]
    section.raw["the run"] = [{**row, **{f"{k} CPU s": round(v, 2) for k, v in by_program.items()}}]
    log.info("split-long: d=%d in %.1f s", d, seconds)
    return section
