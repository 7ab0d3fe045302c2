"""d = 12 on more hosts, on paper: the expected time from the measured costs, and where scaling stops.

Every worker host has two cores (two processes); RabbitMQ, Redis and the process that launches the
chord are one each, whatever the number of hosts. A chunk costs t_c on a process (its sum and its own
overhead: the CPU of the one-process run of the speed-up, per chunk), and one use of each shared
resource: a message sent by the launcher (s), handled by RabbitMQ (b), state and chord result work in
Redis (q), and two updates of the task's one record, serialized on its key (2w: optimistic
WATCH/MULTI, so at most one update lands per update time w; w is the slower of one writer's update
and what two writers managed together). With P processes the chunks come in ceil(N / P) waves; a
resource whose cost per chunk is c can feed at most t_c / c processes: past that, it sets the pace.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from bench.plan import Plan
from bench.report import Section
from bench.split_chords import ChordCosts
from bench.split_costs import Costs
from worker import split

HOSTS = (1, 4, 8, 16, 64)
CORES_PER_HOST = 2


@dataclass
class Model:
    """The inputs, in seconds per chunk unless named."""

    chunks: int  # N: d = 12's chunks
    chunk_s: float  # t_c
    fixed_s: float  # plan, chord set-up and join, combining, final record
    shared: dict[str, float]  # resource -> seconds of it per chunk

    def limit(self) -> tuple[str, float]:
        """The tightest shared resource and the processes it can feed."""
        name = max(self.shared, key=lambda k: self.shared[k])
        return name, self.chunk_s / self.shared[name] if self.shared[name] > 0 else math.inf

    def time(self, hosts: int) -> tuple[float, int, str]:
        """Expected seconds of d = 12 on `hosts` hosts, its waves, and what sets the pace."""
        procs = hosts * CORES_PER_HOST
        waves = math.ceil(self.chunks / procs)
        compute = waves * self.chunk_s
        name, _ = self.limit()
        paced = self.chunks * self.shared[name] + self.chunk_s
        return self.fixed_s + max(compute, paced), waves, ("compute" if compute >= paced else name)


def build(section: Section, chords: ChordCosts, costs: Costs, plan: Plan) -> Model | None:
    """The model from this run's figures (None if a figure it needs is missing)."""
    d12 = split.plan(12, 10**10, 4 * 10**9, 5000)
    chunk = section.figure(f"d={plan.split_decimal}: CPU a chunk costs its process")
    big = split.plan(
        plan.split_decimal,
        int(plan.split_env.get("SPLIT_MIN_TERMS", 10**10)),
        int(plan.split_env.get("SPLIT_CHUNK_TERMS", 4 * 10**9)),
        5000,
    )
    if d12 is None or chunk is None or chunk.value is None or big is None or "redis" not in chords.cpu_ms:
        return None
    per_term = chunk.value / (2 * big.size)  # CPU seconds a term on one process, the chunk's overheads included
    cpu = chords.cpu_ms["redis"]
    shared = {
        "the launching process": cpu.get("worker", 0.0) / 1e3,
        "RabbitMQ": cpu.get("RabbitMQ", 0.0) / 1e3,
        "Redis (CPU)": cpu.get("Redis", 0.0) / 1e3,
        # Updates of one key land one at a time: the slower of one writer's update time and what two
        # writers managed together (optimistic retries included).
        "the task's record": 2
        * max(costs.update_s.get("redis", 0.0), 1 / costs.two_writers_per_s.get("redis", math.inf)),
    }
    return Model(d12.chunks, per_term * 2 * d12.size, max(0.0, chords.fixed_s.get("redis", 0.0)), shared)


def render(section: Section, chords: ChordCosts, costs: Costs, plan: Plan) -> str:
    """The analysis as markdown for BENCHMARKS.md (and key figures added to the section)."""
    model = build(section, chords, costs, plan)
    if model is None:
        return "### d = 12 on more hosts\n\nNot computed: a figure it needs was not measured in this run."
    lines = [
        "### d = 12 on more hosts (model from this run's figures)",
        "",
        f"d = 12 is {model.chunks} chunks of 4e9 terms; one chunk takes t_c = {model.chunk_s:.2f} s on one "
        f"process (CPU per term of the d={plan.split_decimal} one-process run); a split task's fixed time is "
        f"{model.fixed_s:.2f} s (Redis chords). Shared per chunk: "
        + ", ".join(f"{k} {1e3 * v:.2f} ms" for k, v in model.shared.items())
        + ". Hosts have two cores; RabbitMQ, Redis and the launcher one each.",
        "",
        "| worker hosts | processes | waves | expected time | speed-up vs 1 host | efficiency | paced by |",
        "|---|---|---|---|---|---|---|",
    ]
    base, _, _ = model.time(1)
    for hosts in HOSTS:
        t, waves, pace = model.time(hosts)
        lines.append(
            f"| {hosts} | {hosts * CORES_PER_HOST} | {waves} | {t:,.1f} s | {base / t:.1f}x | "
            f"{base / t / hosts:.0%} | {pace} |"
        )
        section.add(
            f"model: d=12 on {hosts} host{'s' if hosts > 1 else ''}",
            t,
            "s",
            how=f"{waves} waves of {model.chunk_s:.2f} s + {model.fixed_s:.2f} s fixed; paced by {pace}",
            key=hosts in (1, 64),
        )
    ranked = sorted(((model.chunk_s / v if v > 0 else math.inf, k) for k, v in model.shared.items()))
    first_procs, first = ranked[0]
    granularity = model.chunks
    stops = min(first_procs, granularity)
    lines += [
        "",
        "**Where scaling stops.** Each shared resource can feed t_c / (its cost per chunk) processes: "
        + "; ".join(f"{k} {p:,.0f} ({p / CORES_PER_HOST:,.0f} hosts)" for p, k in ranked)
        + f". The chunks themselves allow {granularity} processes ({granularity // CORES_PER_HOST} hosts: one "
        f"wave). So the first limit is **{first if first_procs < granularity else 'the number of chunks'}** at "
        f"about {stops / CORES_PER_HOST:,.0f} hosts; below that, time falls as 1/hosts, in steps of one wave. "
        f"The combining step ({1e3 * costs.combine_s:.0f} ms for {costs.combine_results} results) runs once and "
        "never limits. Measured on one 2-core VM where RabbitMQ, Redis and the workers share the cores, so the "
        "shared costs are upper bounds; a network adds its round trips to the record's update time w.",
    ]
    section.add(
        "model: hosts where scaling stops",
        stops / CORES_PER_HOST,
        "hosts",
        how=f"first limit: {first if first_procs < granularity else 'the number of chunks'}",
        key=True,
    )
    return "\n".join(lines)
