"""3. Status reads: GET /task/{id} beside GET /livez (no Thrift hop), for every variant side by side.

Each variant (by default the files backend and Redis) has a product of its own, all running at once;
for each connection count the routes of every variant take turns run by run (the order reversed
every other round), so all see the same machine state. The ratio of /task to /livez says what the
Thrift hop and the store cost; the ratio of a variant to the baseline compares the backends.

Two kinds of reads: finished tasks, which the gateway keeps in memory (they never change:
app/task_reader.py), so those measure the gateway itself; and, at the judged connection count, tasks
that have not ended (the worker stopped: they stay WAITING), which cross Thrift and read the store
(a state file, or a Redis GET) on every request.
"""

from __future__ import annotations

import logging
import statistics

import httpx

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.load import LoadResult, Request, alternating, run_load, tool
from bench.report import Section
from bench.stack import purge_queue, start_worker, stop_worker
from bench.tasks import finished_tasks
from testing.stack import Stack

log = logging.getLogger(__name__)

TITLE = "3. Status reads vs /livez"

MIN_RATIO = 0.6
MAX_P99_MS = 20.0
MIN_VS_BASELINE = 0.8
_TASKS = 16
_LIVE_TASKS = 64
ROUTES = {"livez": "/livez", "ended": "/task (ended)", "live": "/task (not ended)"}


def _waiting_tasks(stack: Stack) -> list[str]:
    """Distinct tasks that stay WAITING: the worker stopped first, its queue purged after."""
    stop_worker(stack)
    with httpx.Client(base_url=stack.api, timeout=10) as client:
        return [client.post("/calcpi/3").json()["id"] for _ in range(_LIVE_TASKS)]


def _release(stack: Stack, ids: list[str]) -> None:
    with httpx.Client(base_url=stack.api, timeout=10) as client:
        for task_id in ids:
            client.delete(f"/task/{task_id}")
    purge_queue(stack)
    start_worker(stack)


def run(lab: Lab) -> Section:
    """Throughput and latency of status reads and of /livez at each connection count, every variant."""
    plan = lab.plan
    stacks = lab.shared_stacks()
    section = Section("status", TITLE)
    mixes: dict[tuple[str, str], list[Request]] = {}
    for name, stack in stacks.items():
        mixes[name, "livez"] = [Request("GET", "/livez")]
        mixes[name, "ended"] = [Request("GET", f"/task/{i}") for i in finished_tasks(stack.api, _TASKS)]
    top = max(plan.connections)
    rows: list[dict[str, object]] = []
    errors = 0
    for conns in plan.connections:
        routes = ["livez", "ended", "live"] if conns == top else ["livez", "ended"]
        runs = plan.http_runs if conns == top else plan.curve_runs
        live: dict[str, list[str]] = {}
        results: dict[tuple[str, str], list[LoadResult]] = {(v, r): [] for v in stacks for r in routes}
        cpu_ms: dict[tuple[str, str], list[float]] = {(v, r): [] for v in stacks for r in routes}
        try:
            if "live" in routes:
                for name, stack in stacks.items():
                    live[name] = _waiting_tasks(stack)
                    mixes[name, "live"] = [Request("GET", f"/task/{i}") for i in live[name]]
            jobs = [f"{v}|{r}" for v in stacks for r in routes]
            with lab.watch.phase("status"):
                for i, order in enumerate(alternating(jobs, runs)):
                    for job in order:
                        name, route = job.split("|")
                        with cpu_use(stacks[name], lab.running()) as cpu:
                            result = run_load(stacks[name].api, mixes[name, route], conns, plan.http_seconds)
                        results[name, route].append(result)
                        cpu_ms[name, route].append(cpu.total_ms(result.requests))
                        errors += result.unexpected()
                        rows.append(
                            {
                                "variant": name,
                                "route": ROUTES[route],
                                "run": i + 1,
                                **result.row(),
                                **cpu.columns(result.requests),
                            }
                        )
                        log.info(
                            "c=%d %s %s run %d: %.0f req/s, p99 %.2f ms",
                            conns,
                            name,
                            ROUTES[route],
                            i + 1,
                            result.rps,
                            result.p99_ms,
                        )
        finally:
            for name, ids in live.items():
                _release(stacks[name], ids)
        _figures(section, lab, conns, conns == top, results, runs)
        if conns == top:
            _cpu_figures(section, lab, conns, cpu_ms)
    section.add("errors (non-2xx, socket)", errors, "", target="0", passed=errors == 0)
    section.others = [float(r["others %"]) for r in rows]  # type: ignore[arg-type] - the raw row's values are typed object
    section.notes += [
        "Variants, each a product of its own, side by side: " + "; ".join(v.describe() for v in lab.variants) + ".",
        f"Load by {tool()} (one thread, keep-alive), {plan.http_seconds} s per run; {plan.http_runs} runs per "
        f"variant and route at {top} connections (where the targets apply), {plan.curve_runs} at the others (the "
        "shape of the curve); order reversed every other round. Ended reads cycle over "
        f"{_TASKS} finished tasks; not-ended reads over {_LIVE_TASKS} distinct WAITING tasks (worker stopped).",
        f"Targets: /task >= {MIN_RATIO:.0%} of /livez with p99 < {MAX_P99_MS:g} ms for ended tasks; every variant's "
        f"/task req/s >= {MIN_VS_BASELINE}x the baseline's ({lab.baseline.name}), ended and not ended.",
        "Raw runs give each product process's CPU ms per request and the share of the cores other processes took.",
    ]
    section.raw["every run"] = rows
    return section


def _figures(
    section: Section, lab: Lab, conns: int, judged: bool, results: dict[tuple[str, str], list[LoadResult]], runs: int
) -> None:
    how = f"median of {runs}"
    base = lab.baseline.name
    names = [v.name for v in lab.variants]

    def rps(name: str, route: str) -> float:
        return statistics.median(r.rps for r in results[name, route])

    for name in names:
        livez = results[name, "livez"]
        for route in [r for r in ("ended", "live") if (name, r) in results]:
            reads = results[name, route]
            label = f"c={conns}, {name}: {ROUTES[route]}"
            section.add(f"{label} req/s", rps(name, route), "req/s", runs=[r.rps for r in reads], how=how)
            share = rps(name, route) / rps(name, "livez")
            ended = route == "ended"
            section.add(
                f"{label} as share of /livez",
                share * 100,
                "%",
                target=f">= {MIN_RATIO:.0%}" if judged and ended else "",
                passed=(share >= MIN_RATIO) if judged and ended else None,
                key=judged and ended,
                runs=[a.rps / b.rps * 100 for a, b in zip(reads, livez, strict=True) if b.rps],
                how="ratio of the medians; runs: per-round pairs",
            )
            p99 = statistics.median(r.p99_ms for r in reads)
            section.add(
                f"{label} p99",
                p99,
                "ms",
                target=f"< {MAX_P99_MS:g} ms" if judged and ended else "",
                passed=(p99 < MAX_P99_MS) if judged and ended else None,
                key=judged and ended,
                runs=[r.p99_ms for r in reads],
                how=how,
            )
        section.add(
            f"c={conns}, {name}: /livez req/s", rps(name, "livez"), "req/s", runs=[r.rps for r in livez], how=how
        )
    for name in names[1:]:
        for route in [r for r in ("ended", "live") if (name, r) in results]:
            ratio = rps(name, route) / rps(base, route)
            pairs = [a.rps / b.rps for a, b in zip(results[name, route], results[base, route], strict=True) if b.rps]
            section.add(
                f"c={conns}: {ROUTES[route]} req/s, {name} / {base}",
                ratio,
                "x",
                target=f">= {MIN_VS_BASELINE}x" if judged else "",
                passed=(ratio >= MIN_VS_BASELINE) if judged else None,
                key=judged,
                runs=pairs,
                how="ratio of the medians; runs: per-round pairs",
            )


def _cpu_figures(section: Section, lab: Lab, conns: int, cpu_ms: dict[tuple[str, str], list[float]]) -> None:
    """What a read costs the machine (CPU of the product, RabbitMQ and Redis per request), and the
    throughput that bound allows a variant against the baseline: unlike req/s, it holds on a machine that
    others keep busy."""
    base = lab.baseline.name
    for name in [v.name for v in lab.variants]:
        for route in ("ended", "live"):
            section.add(
                f"c={conns}, {name}: {ROUTES[route]} CPU per request",
                statistics.median(cpu_ms[name, route]),
                "ms",
                runs=cpu_ms[name, route],
                how="median; product processes + RabbitMQ + Redis",
            )
    for name in [v.name for v in lab.variants][1:]:
        for route in ("ended", "live"):
            ratio = statistics.median(cpu_ms[base, route]) / statistics.median(cpu_ms[name, route])
            section.add(
                f"c={conns}: {ROUTES[route]} CPU-bound req/s, {name} / {base}",
                ratio,
                "x",
                target=f">= {MIN_VS_BASELINE}x",
                passed=ratio >= MIN_VS_BASELINE,
                key=True,
                how="inverse ratio of the CPU per request (medians)",
            )
