"""5. Enqueue: POST /calcpi/1 accepted (202) per second at 10 connections, publisher confirms on.

Two conditions side by side, in ABBAAB order: the worker stopped (the figure isolates the path
gateway -> Thrift -> state file -> confirmed publish, and the queue depth afterwards proves every
202 was really queued), and the worker consuming (as deployed: on two cores the worker's
processes compete with the gateway and the tserver). The queue is purged after every run.

Beneath it, the publishing layer alone, side by side in this process: the product's
ConfirmedPublisher against Celery's own `apply_async` (confirm_publish on), 10 threads each, on a
private queue, alternating ABAB.
"""

from __future__ import annotations

import logging
import statistics
import time

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.load import LoadResult, Request, run_load, tool
from bench.report import Section
from bench.stack import purge_queue, queue_depth, start_worker, stop_worker
from bench.publishing import publish_side_by_side

log = logging.getLogger(__name__)

TITLE = "5. Enqueue POST /calcpi/1"

MIN_RATE = 1000.0
_WARMUP_SECONDS = 2
_PATTERN = "ABBAAB"  # A: worker stopped, B: worker consuming; each condition first and last once
_CONDITIONS = {"A": "worker stopped", "B": "worker consuming"}


def run(lab: Lab) -> Section:
    """Accepted starts per second, with and without the worker consuming meanwhile."""
    plan = lab.plan
    stack = lab.shared_stack()
    section = Section("enqueue", TITLE)
    mix = [Request("POST", "/calcpi/1")]
    results: dict[str, list[LoadResult]] = {name: [] for name in _CONDITIONS.values()}
    rows: list[dict[str, object]] = []
    missing = 0  # 202s whose message is not in the queue (worker stopped only)
    errors = 0
    runs = (_PATTERN * plan.enqueue_runs)[: 2 * plan.enqueue_runs]
    worker_running = True
    try:
        with lab.watch.phase("enqueue"):
            # Unmeasured: the first seconds of a fresh product pay for first connections, the new
            # queue's and the state folder's first growth (the first measured run was 30-50% slower).
            warm = run_load(stack.api, mix, plan.enqueue_connections, min(_WARMUP_SECONDS, plan.enqueue_seconds))
            rows.append({"condition": "warm-up (not counted)", "run": 0,
                         "accepted/s": round(warm.statuses.get(202, 0) / warm.seconds, 1), **warm.row()})
            purge_queue(stack)
            for i, key in enumerate(runs):
                condition = _CONDITIONS[key]
                if key == "A" and worker_running:
                    stop_worker(stack)
                    worker_running = False
                elif key == "B" and not worker_running:
                    start_worker(stack)
                    worker_running = True
                purge_queue(stack)
                before = queue_depth(stack)
                with cpu_use(stack) as cpu:
                    result = run_load(stack.api, mix, plan.enqueue_connections, plan.enqueue_seconds)
                accepted = result.statuses.get(202, 0)
                queued = queue_depth(stack) - before
                errors += result.unexpected(frozenset({202}))
                row = {"condition": condition, "run": i + 1, "accepted/s": round(accepted / result.seconds, 1),
                       **result.row(), **cpu.columns(accepted)}
                if key == "A":
                    # Requests cut off by the end of the run may be queued without their 202 being counted.
                    gap = accepted - queued
                    missing += max(0, gap)
                    row["queued"] = queued
                results[condition].append(result)
                rows.append(row)
                log.info("enqueue run %d (%s): %.0f accepted/s, p99 %.1f ms", i + 1, condition,
                         accepted / result.seconds, result.p99_ms)
                purge_queue(stack)
    finally:
        if not worker_running:
            start_worker(stack)
        time.sleep(0.5)  # let the pool finish what it had taken before the purge
        purge_queue(stack)
    how = f"median of {plan.enqueue_runs}"
    for condition, res in results.items():
        rates = [r.statuses.get(202, 0) / r.seconds for r in res]
        value = statistics.median(rates)
        judged = condition == _CONDITIONS["A"]
        section.add(f"{condition}: accepted/s", value, "req/s", target=f">= {MIN_RATE:,.0f}/s" if judged else "",
                    passed=(value >= MIN_RATE) if judged else None, runs=rates, how=how)
        section.add(f"{condition}: p99", statistics.median(r.p99_ms for r in res), "ms",
                    runs=[r.p99_ms for r in res], how=how)
    layer = publish_side_by_side(lab.broker_url, plan.enqueue_connections, plan.enqueue_seconds, plan.enqueue_runs)
    for name, rates in layer.rates.items():
        section.add(f"publish layer alone: {name}", statistics.median(rates), "msg/s", runs=rates,
                    how=f"median of {len(rates)}; {plan.enqueue_connections} threads, {plan.enqueue_seconds} s each")
    for name, cpu in layer.cpu_ms.items():
        section.add(f"publish layer alone: {name} CPU per message", statistics.median(cpu), "ms", runs=cpu,
                    how="this process's CPU (user + system) / messages confirmed")
    section.add("errors (non-202, socket)", errors, "", target="0", passed=errors == 0)
    section.others = [float(r["others %"]) for r in rows if "others %" in r]  # type: ignore[arg-type]
    section.add("202 answered but not queued", missing, "", target="0", passed=missing == 0)
    section.notes += [
        f"{plan.enqueue_connections} connections, {plan.enqueue_seconds} s per run after one {_WARMUP_SECONDS} s "
        f"warm-up run (listed, not counted), load by {tool()}; "
        f"conditions in {runs} order (A = worker stopped with `supervisorctl stop worker`, B = worker consuming).",
        "With the worker stopped, the queue's depth after a run (a passive queue.declare) is compared with the "
        "count of 202 answers: a 202 whose message is not in RabbitMQ would show as \"answered but not queued\".",
        "The queue is purged before and after every run; the product's queue is deleted when its stack stops.",
    ]
    section.raw["every run"] = rows
    return section
