"""5. Enqueue: POST /calcpi/1 accepted (202) per second at 10 connections, publisher confirms on, for
every variant side by side, beside /livez at the same connections.

Each variant's product is measured in two conditions: the worker stopped (the figure isolates the
path gateway -> Thrift -> store -> confirmed publish, and the queue depth afterwards proves every
202 was really queued), and the worker consuming (as deployed: on two cores the worker's processes
compete with the gateway and the tserver). Rounds alternate: the workers of every product stopped
(each variant's /livez and POST runs, in an order reversed every other round), then consuming, the
two phases swapped every other round. The queue is purged before and after every run.

Beneath it, the publishing layer alone, side by side in this process: the Thrift server's aio-pika
TaskPublisher against Celery's own `apply_async` (bench/publishing.py).
"""

from __future__ import annotations

import logging
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.load import LoadResult, Request, alternating, run_load, tool
from bench.publishing import publish_side_by_side
from bench.report import Section
from bench.stack import purge_queue, queue_depth, start_worker, stop_worker
from testing.stack import Stack

log = logging.getLogger(__name__)

TITLE = "5. Enqueue POST /calcpi/1"

MIN_RATE = 1000.0
MIN_VS_BASELINE = 0.8
_WARMUP_SECONDS = 2
CONDITIONS = {"livez": "/livez", "stopped": "worker stopped", "consuming": "worker consuming"}


def _set_workers(stacks: dict[str, Stack], running: bool) -> None:
    with ThreadPoolExecutor(len(stacks)) as pool:
        for done in [pool.submit(start_worker if running else stop_worker, s) for s in stacks.values()]:
            done.result()


def run(lab: Lab) -> Section:
    """Accepted starts per second with and without the worker consuming, and /livez, every variant."""
    plan = lab.plan
    stacks = lab.shared_stacks()
    section = Section("enqueue", TITLE)
    post, livez = [Request("POST", "/calcpi/1")], [Request("GET", "/livez")]
    results: dict[tuple[str, str], list[LoadResult]] = {(v, c): [] for v in stacks for c in CONDITIONS}
    cpu_ms: dict[tuple[str, str], list[float]] = {(v, c): [] for v in stacks for c in CONDITIONS}
    rows: list[dict[str, object]] = []
    missing = errors = 0  # 202s whose message is not in the queue (worker stopped only); bad answers
    conns, seconds = plan.enqueue_connections, plan.enqueue_seconds
    running = True
    try:
        with lab.watch.phase("enqueue"):
            for name, stack in stacks.items():
                # Unmeasured: the first seconds of a fresh product pay for first connections, the new
                # queue's and the store's first growth (the first measured run was 30-50% slower).
                warm = run_load(stack.api, post, conns, min(_WARMUP_SECONDS, seconds))
                rows.append({"variant": name, "condition": "warm-up (not counted)", "run": 0, **warm.row()})
                purge_queue(stack)
            stopped_jobs = alternating([f"{v}|{c}" for v in stacks for c in ("livez", "stopped")], plan.enqueue_runs)
            consuming_jobs = alternating([f"{v}|consuming" for v in stacks], plan.enqueue_runs)
            for i in range(plan.enqueue_runs):
                phases = [(False, stopped_jobs[i]), (True, consuming_jobs[i])]
                for want_running, jobs in phases if i % 2 == 0 else phases[::-1]:
                    if running != want_running:
                        _set_workers(stacks, want_running)
                        running = want_running
                    for job in jobs:
                        name, condition = job.split("|")
                        stack = stacks[name]
                        purge_queue(stack)
                        before = queue_depth(stack)
                        with cpu_use(stack, lab.running()) as cpu:
                            result = run_load(stack.api, livez if condition == "livez" else post, conns, seconds)
                        ok = frozenset({200}) if condition == "livez" else frozenset({202})
                        answered = sum(result.statuses.get(code, 0) for code in ok)
                        errors += result.unexpected(ok)
                        row = {
                            "variant": name,
                            "condition": CONDITIONS[condition],
                            "run": i + 1,
                            "answered/s": round(answered / result.seconds, 1),
                            **result.row(),
                            **cpu.columns(answered),
                        }
                        if condition == "stopped":
                            # Requests cut off by the end of the run may be queued without their 202 counted.
                            row["queued"] = queue_depth(stack) - before
                            missing += max(0, answered - int(row["queued"]))  # type: ignore[call-overload] - the raw row's values are typed object
                        results[name, condition].append(result)
                        cpu_ms[name, condition].append(cpu.total_ms(answered))
                        rows.append(row)
                        log.info(
                            "enqueue round %d, %s, %s: %.0f/s, p99 %.1f ms",
                            i + 1,
                            name,
                            CONDITIONS[condition],
                            answered / result.seconds,
                            result.p99_ms,
                        )
                        purge_queue(stack)
    finally:
        if not running:
            _set_workers(stacks, True)
        time.sleep(0.5)  # let the pools finish what they had taken before the purge
        for stack in stacks.values():
            purge_queue(stack)
    _figures(section, lab, results)
    base = lab.baseline.name
    for v in lab.variants:
        section.add(
            f"{v.name}, worker stopped: CPU per accepted start",
            statistics.median(cpu_ms[v.name, "stopped"]),
            "ms",
            runs=cpu_ms[v.name, "stopped"],
            how="median; product processes + RabbitMQ + Redis",
        )
    for v in lab.variants[1:]:
        ratio = statistics.median(cpu_ms[base, "stopped"]) / statistics.median(cpu_ms[v.name, "stopped"])
        section.add(
            f"worker stopped: CPU-bound accepted/s, {v.name} / {base}",
            ratio,
            "x",
            target=f">= {MIN_VS_BASELINE}x",
            passed=ratio >= MIN_VS_BASELINE,
            key=True,
            how="inverse ratio of the CPU per accepted start (medians): holds however busy others keep the cores",
        )
    layer = publish_side_by_side(lab.broker_url, conns, seconds, plan.enqueue_runs)
    for name, rates in layer.rates.items():
        section.add(
            f"publish layer alone: {name}",
            statistics.median(rates),
            "msg/s",
            runs=rates,
            how=f"median of {len(rates)}; {conns} concurrent publishes, {seconds} s each",
        )
    for name, cpu in layer.cpu_ms.items():
        section.add(
            f"publish layer alone: {name} CPU per message",
            statistics.median(cpu),
            "ms",
            runs=cpu,
            how="this process's CPU (user + system) / messages confirmed",
        )
    section.add("errors (non-2xx, socket)", errors, "", target="0", passed=errors == 0)
    section.add("202 answered but not queued", missing, "", target="0", passed=missing == 0)
    section.others = [float(r["others %"]) for r in rows if "others %" in r]  # type: ignore[arg-type] - the raw row's values are typed object
    section.notes += [
        "Variants side by side: " + "; ".join(v.describe() for v in lab.variants) + ".",
        f"{conns} connections, {seconds} s per run after one {_WARMUP_SECONDS} s warm-up run per product (listed, "
        f"not counted), load by {tool()}; {plan.enqueue_runs} rounds, each: every product's worker stopped "
        "(`supervisorctl stop worker`) for its /livez and POST runs, then consuming for its POST runs (phases "
        "swapped, orders reversed every other round).",
        "With the worker stopped, the queue's depth after a run is compared with the count of 202 answers: a 202 "
        'whose message is not in RabbitMQ would show as "answered but not queued".',
        f"Targets: >= {MIN_RATE:,.0f} accepted/s with the worker stopped; every variant >= {MIN_VS_BASELINE}x the "
        f"baseline's ({lab.baseline.name}) accepted/s.",
    ]
    section.raw["every run"] = rows
    return section


def _figures(section: Section, lab: Lab, results: dict[tuple[str, str], list[LoadResult]]) -> None:
    def rates(name: str, condition: str) -> list[float]:
        code = 200 if condition == "livez" else 202
        return [r.statuses.get(code, 0) / r.seconds for r in results[name, condition]]

    names = [v.name for v in lab.variants]
    base = names[0]
    for name in names:
        livez = rates(name, "livez")
        for condition in ("stopped", "consuming"):
            values = rates(name, condition)
            value = statistics.median(values)
            judged = condition == "stopped"
            section.add(
                f"{name}, {CONDITIONS[condition]}: accepted/s",
                value,
                "req/s",
                target=f">= {MIN_RATE:,.0f}/s" if judged else "",
                passed=(value >= MIN_RATE) if judged else None,
                runs=values,
                how=f"median of {len(values)}",
                key=judged,
            )
            section.add(
                f"{name}, {CONDITIONS[condition]}: p99",
                statistics.median(r.p99_ms for r in results[name, condition]),
                "ms",
                runs=[r.p99_ms for r in results[name, condition]],
                how=f"median of {len(values)}",
            )
        stopped = rates(name, "stopped")
        section.add(
            f"{name}, worker stopped: accepted/s as share of /livez",
            100 * statistics.median(stopped) / statistics.median(livez),
            "%",
            runs=[100 * a / b for a, b in zip(stopped, livez, strict=True) if b],
            how="ratio of the medians; runs: per-round pairs",
        )
        section.add(
            f"{name}: /livez req/s", statistics.median(livez), "req/s", runs=livez, how=f"median of {len(livez)}"
        )
    for name in names[1:]:
        mine, theirs = rates(name, "stopped"), rates(base, "stopped")
        ratio = statistics.median(mine) / statistics.median(theirs)
        section.add(
            f"worker stopped: accepted/s, {name} / {base}",
            ratio,
            "x",
            target=f">= {MIN_VS_BASELINE}x",
            passed=ratio >= MIN_VS_BASELINE,
            runs=[a / b for a, b in zip(mine, theirs, strict=True) if b],
            how="ratio of the medians; runs: per-round pairs",
            key=True,
        )
