"""9. Split calculations: one task cut into chunks on every worker process (README "Split calculations").

* Speed-up: d = 11 on one worker process against two (WORKER_CONCURRENCY=1 vs 2: both supervisord
  programs, whole calculations and chunks, take it), two products side by side, runs alternating.
* Overhead of splitting: d = 9 split (the default SPLIT_MIN_TERMS) against the unsplit path
  (SPLIT_MIN_TERMS huge), both on one process, on both backends (files: Celery joins the chord by
  polling SQLite; Redis: natively), four products side by side, runs alternating.
* What a chunk costs besides its sum, and the model of d = 12 on more hosts: bench/split_chords.py,
  bench/split_costs.py, bench/split_model.py.

Times are the task's own (queued -> stopped, from its record), so the poll interval does not count.
Beside each time, the CPU the product's processes spent on the task: on a machine that others keep
busy, two processes may get no more than one core between them, and CPU seconds still tell what the
product itself costs (the estimates built from them say what two free cores would give).
"""

from __future__ import annotations

import logging
import math
import statistics
from dataclasses import dataclass, field

from bench import split_chords, split_costs, split_model
from bench.cpu import cpu_use
from bench.lab import Lab, StackSpec
from bench.load import alternating
from bench.report import Section
from bench.splitrun import SplitError, aggregate, run_task, split_env

log = logging.getLogger(__name__)

TITLE = "9. Split calculations"

MIN_SPEEDUP = 1.8
MAX_OVERHEAD = 0.10
UNSPLIT = str(10**18)
_SERVICES = ("RabbitMQ", "Redis")  # shared with others: left out of the product's own CPU


@dataclass
class Runs:
    """Per product: the task's seconds, the product's CPU seconds, its chunk processes' CPU seconds."""

    seconds: dict[str, list[float]] = field(default_factory=dict)
    cpu: dict[str, list[float]] = field(default_factory=dict)
    chunks_cpu: dict[str, list[float]] = field(default_factory=dict)
    chunks: int = 0

    def median(self, what: str, name: str) -> float:
        return statistics.median(getattr(self, what)[name])


def _side_by_side(
    lab: Lab,
    label: str,
    specs: dict[str, StackSpec],
    decimal: int,
    runs: int,
    timeout: float,
    poll: float,
    rows: list[dict[str, object]],
    section: Section,
) -> Runs:
    """`runs` rounds of one task of `decimal` on each product, alternating."""
    out = Runs({n: [] for n in specs}, {n: [] for n in specs}, {n: [] for n in specs})
    with lab.own_stacks(label, specs) as stacks, lab.watch.phase(label):
        for i, order in enumerate(alternating(list(stacks), runs)):
            for name in order:
                with cpu_use(stacks[name], lab.running()) as cpu:
                    row = run_task(stacks[name].api, decimal, timeout, poll)
                programs = aggregate(cpu.by_role)
                product = sum(v for k, v in programs.items() if k not in _SERVICES)
                out.seconds[name].append(float(row["record s"]))
                out.cpu[name].append(product)
                out.chunks_cpu[name].append(programs.get("chunks", 0.0))
                out.chunks = max(out.chunks, int(row["chunks"]))
                section.others.append(cpu.others * 100)
                rows.append(
                    {
                        "products": label,
                        "variant": name,
                        "run": i + 1,
                        **row,
                        "product CPU s": round(product, 2),
                        "chunks CPU s": round(programs.get("chunks", 0.0), 2),
                        "others %": round(cpu.others * 100),
                    }
                )
                log.info(
                    "%s, %s, run %d: d=%d in %.2f s (%d chunks, product CPU %.1f s, others %.0f%%)",
                    label,
                    name,
                    i + 1,
                    decimal,
                    row["record s"],
                    row["chunks"],
                    product,
                    100 * cpu.others,
                )
    return out


def _speed_up(section: Section, r: Runs, d: int) -> None:
    one, two = r.median("seconds", "1 process"), r.median("seconds", "2 processes")
    for name in ("1 process", "2 processes"):
        section.add(
            f"d={d}, {name}",
            r.median("seconds", name),
            "s",
            runs=r.seconds[name],
            how=f"median of {len(r.seconds[name])}",
        )
        cores = [c / s for c, s in zip(r.chunks_cpu[name], r.seconds[name], strict=True)]
        section.add(
            f"d={d}, {name}: cores its chunk processes got",
            statistics.median(cores),
            "cores",
            runs=cores,
            how="chunks program CPU / time: below the processes' count, others had the rest",
        )
    section.add(
        f"d={d}: speed-up, 2 processes / 1",
        one / two,
        "x",
        target=f">= {MIN_SPEEDUP}x",
        passed=one / two >= MIN_SPEEDUP,
        key=True,
        how="ratio of the medians; runs: per-round pairs",
        runs=[a / b for a, b in zip(r.seconds["1 process"], r.seconds["2 processes"], strict=True)],
    )
    if r.chunks:
        section.add(
            f"d={d}: CPU a chunk costs its process",
            r.median("chunks_cpu", "1 process") / r.chunks,
            "s",
            how="chunks program CPU on 1 process / chunks: its sum and every overhead of its own",
        )
    # Two free cores: the same CPU work in ceil(N/2) waves of chunks instead of N.
    waves = r.chunks / math.ceil(r.chunks / 2) if r.chunks else 2.0
    estimate = waves * r.median("cpu", "1 process") / r.median("cpu", "2 processes")
    section.add(
        f"d={d}: speed-up on two free cores, from CPU time",
        estimate,
        "x",
        key=True,
        how=f"(N / ceil(N/2), N = {r.chunks} chunks) x product CPU on 1 process / on 2",
    )


def _overhead(section: Section, r: Runs, d: int) -> None:
    for backend in ("files", "redis"):
        whole, cut = r.seconds[f"{backend} unsplit"], r.seconds[f"{backend} split"]
        section.add(
            f"d={d}, {backend}, 1 process: unsplit",
            statistics.median(whole),
            "s",
            runs=whole,
            how=f"median of {len(whole)}",
        )
        section.add(
            f"d={d}, {backend}, 1 process: split", statistics.median(cut), "s", runs=cut, how=f"median of {len(cut)}"
        )
        overhead = statistics.median(cut) / statistics.median(whole) - 1
        section.add(
            f"d={d}, {backend}: overhead of splitting",
            100 * overhead,
            "%",
            target=f"<= {MAX_OVERHEAD:.0%}",
            passed=overhead <= MAX_OVERHEAD,
            key=True,
            how="split / unsplit - 1, medians; runs: per-round pairs",
            runs=[100 * (a / b - 1) for a, b in zip(cut, whole, strict=True)],
        )
        cpu = r.median("cpu", f"{backend} split") / r.median("cpu", f"{backend} unsplit") - 1
        section.add(
            f"d={d}, {backend}: CPU overhead of splitting",
            100 * cpu,
            "%",
            key=True,
            runs=r.cpu[f"{backend} split"],
            how="product CPU split / unsplit - 1, medians; runs: split's CPU s "
            "(waiting, such as the files backend's chord polling, is not CPU)",
        )


def run(lab: Lab) -> Section:
    """Speed-up on two processes, the overhead of splitting, the costs per chunk and the model."""
    plan = lab.plan
    section = Section("split", TITLE)
    rows: list[dict[str, object]] = []
    env = plan.split_env
    d, d0 = plan.split_decimal, plan.overhead_decimal
    try:
        _speed_up(
            section,
            _side_by_side(
                lab,
                "speed-up",
                {
                    "1 process": StackSpec("files", split_env(env, WORKER_CONCURRENCY="1")),
                    "2 processes": StackSpec("files", split_env(env, WORKER_CONCURRENCY="2")),
                },
                d,
                plan.split_runs,
                900,
                0.1,
                rows,
                section,
            ),
            d,
        )
        _overhead(
            section,
            _side_by_side(
                lab,
                "overhead",
                {
                    f"{backend} {kind}": StackSpec(
                        backend,
                        split_env(
                            env, WORKER_CONCURRENCY="1", **({"SPLIT_MIN_TERMS": UNSPLIT} if kind == "unsplit" else {})
                        ),
                    )
                    for backend in ("files", "redis")
                    for kind in ("unsplit", "split")
                },
                d0,
                plan.overhead_runs,
                300,
                0.01,
                rows,
                section,
            ),
            d0,
        )
    except SplitError as exc:
        section.error = str(exc)
        log.error("split: %s", exc)
    chords = split_chords.measure(lab, section, rows)
    costs = split_costs.measure(plan, section)
    section.text.append(split_model.render(section, chords, costs, plan))
    settings = ", ".join(f"{k}={v}" for k, v in env.items()) or "the split settings at their defaults"
    section.notes += [
        f"Products of the files backend (the default) unless named; MAX_DECIMAL=12, {settings}. d={d}: "
        f"{plan.split_runs} rounds, d={d0}: {plan.overhead_runs}, orders reversed every other round.",
        f"Targets: d={d} on two processes >= {MIN_SPEEDUP}x faster than on one; splitting d={d0} costs <= "
        f"{MAX_OVERHEAD:.0%} over the unsplit path (both on one process).",
    ]
    section.raw["every task"] = rows
    return section
