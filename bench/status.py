"""3. Status reads: GET /task/{id} beside GET /livez (no Thrift hop), same product, same run.

For each connection count, the two routes take turns run by run (the order alternates), so both
see the same machine state; the ratio of their throughputs is what the Thrift hop and the state
file cost. Reads cycle over finished tasks; the gateway keeps ended tasks in memory (they never
change: app/task_reader.py), so those reads measure the gateway itself. A second figure reads
distinct tasks that have not ended (the worker stopped), which go through Thrift and the state
file on every request.
"""

from __future__ import annotations

import logging
import statistics

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.load import LoadResult, Request, run_load, tool
from bench.report import Section
from bench.stack import purge_queue, start_worker, stop_worker
from bench.tasks import finished_tasks

log = logging.getLogger(__name__)

TITLE = "3. Status reads vs /livez"

MIN_RATIO = 0.6
MAX_P99_MS = 20.0
TARGET_CONNECTIONS = 50
_TASKS = 16


def run(lab: Lab) -> Section:
    """Throughput and latency of status reads and of /livez at each connection count."""
    plan = lab.plan
    stack = lab.shared_stack()
    section = Section("status", TITLE)
    ids = finished_tasks(stack.api, _TASKS)
    routes = {
        "status": [Request("GET", f"/task/{task_id}") for task_id in ids],
        "livez": [Request("GET", "/livez")],
    }
    rows: list[dict[str, object]] = []
    errors = 0
    how = f"median of {plan.http_runs}"
    with lab.watch.phase("status"):
        for conns in plan.connections:
            results: dict[str, list[LoadResult]] = {"status": [], "livez": []}
            for i in range(plan.http_runs):
                order = ["livez", "status"] if i % 2 == 0 else ["status", "livez"]
                for route in order:
                    with cpu_use(stack) as cpu:
                        result = run_load(stack.api, routes[route], conns, plan.http_seconds)
                    results[route].append(result)
                    errors += result.unexpected()
                    rows.append({"route": route, "run": i + 1, **result.row(), **cpu.columns(result.requests)})
                    log.info("c=%d %s run %d: %.0f req/s, p50 %.2f ms, p99 %.2f ms", conns, route, i + 1,
                             result.rps, result.p50_ms, result.p99_ms)
            status, livez = results["status"], results["livez"]
            s_rps = statistics.median(r.rps for r in status)
            l_rps = statistics.median(r.rps for r in livez)
            at_target = conns == TARGET_CONNECTIONS
            section.add(f"c={conns}: /task req/s", s_rps, "req/s", runs=[r.rps for r in status], how=how)
            section.add(f"c={conns}: /livez req/s", l_rps, "req/s", runs=[r.rps for r in livez], how=how)
            ratio = s_rps / l_rps if l_rps else 0.0
            section.add(f"c={conns}: /task as share of /livez", ratio * 100, "%",
                        target=f">= {MIN_RATIO:.0%}" if at_target else "",
                        passed=(ratio >= MIN_RATIO) if at_target else None,
                        runs=[a.rps / b.rps * 100 for a, b in zip(status, livez, strict=True) if b.rps],
                        how="ratio of the medians; runs: per-run pairs")
            section.add(f"c={conns}: /task p50", statistics.median(r.p50_ms for r in status), "ms",
                        runs=[r.p50_ms for r in status], how=how)
            p99 = statistics.median(r.p99_ms for r in status)
            section.add(f"c={conns}: /task p99", p99, "ms", target=f"< {MAX_P99_MS:g} ms" if at_target else "",
                        passed=(p99 < MAX_P99_MS) if at_target else None, runs=[r.p99_ms for r in status], how=how)
            section.add(f"c={conns}: /livez p99", statistics.median(r.p99_ms for r in livez), "ms",
                        runs=[r.p99_ms for r in livez], how=how)
    errors += _running_task_reads(stack, section, plan)
    section.add("errors (non-2xx, socket)", errors, "", target="0", passed=errors == 0)
    section.others = [float(r["others %"]) for r in rows]  # type: ignore[arg-type]
    section.notes += [
        f"Load by {tool()} (one thread, keep-alive), {plan.http_seconds} s per run, {plan.http_runs} runs per route "
        f"and connection count, routes alternating; status reads cycle over {_TASKS} finished tasks.",
        f"Targets apply at {TARGET_CONNECTIONS} connections; 1 and 10 are shown for the shape of the curve.",
        "Raw runs also give how busy both cores were, the share other processes took (\"others %\": above the 5-8% "
        "of kernel networking that no process is charged for, it skews that run), and each product process's CPU "
        "ms per request (psutil): on two cores shared with the load generator, CPU per request bounds req/s.",
    ]
    section.raw["every run"] = rows
    return section


def _running_task_reads(stack, section: Section, plan) -> int:  # noqa: ANN001 - the harness's own types
    """Reads that the gateway cannot serve from memory: distinct tasks that have not ended (the worker
    is stopped, so they stay WAITING), so every read crosses Thrift and reads a state file."""
    import httpx

    conns = max(plan.connections)
    results: list[LoadResult] = []
    errors = 0
    stop_worker(stack)
    try:
        with httpx.Client(base_url=stack.api, timeout=10) as client:
            ids = [client.post("/calcpi/3").json()["id"] for _ in range(_TASKS * 4)]
            mix = [Request("GET", f"/task/{task_id}") for task_id in ids]
            for _ in range(plan.http_runs):
                result = run_load(stack.api, mix, conns, plan.http_seconds)
                results.append(result)
                errors += result.unexpected()
            for task_id in ids:
                client.delete(f"/task/{task_id}")
    finally:
        purge_queue(stack)
        start_worker(stack)
    how = f"median of {len(results)}; {len(ids)} distinct waiting tasks (worker stopped), none cacheable"
    section.add(f"c={conns}: not-ended tasks /task req/s", statistics.median(r.rps for r in results), "req/s",
                runs=[r.rps for r in results], how=how)
    section.add(f"c={conns}: not-ended tasks /task p99", statistics.median(r.p99_ms for r in results), "ms",
                runs=[r.p99_ms for r in results], how=how)
    return errors
