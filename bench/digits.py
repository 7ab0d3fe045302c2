"""2. Time to proven digits: from POST /calcpi/{d} to SUCCESS visible on GET /task/{id}.

A user's view of the whole pipeline: gateway, Thrift, the publish, RabbitMQ, Celery's delivery,
the proven sum, the state file, and the read back. One task at a time on an idle product, polled
every plan.poll_interval (2 ms), so the figure is at most one poll late. The task's own times
(queued, started, stopped) split it into waiting and computing.
"""

from __future__ import annotations

import logging
import statistics
import time
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

import httpx

from bench.cpu import cpu_use
from bench.lab import Lab
from bench.report import Section

log = logging.getLogger(__name__)

TITLE = "2. Time to proven digits"

PI = "3.14159265358979323846264338327950288419716939937510"
# Median targets in ms by decimal; decimals without one are shown for information.
TARGET_MS = {**{d: 50.0 for d in range(1, 7)}, 9: 30_000.0, 10: 90_000.0}
_WARMUP = 2  # one task per pool child, not counted: the first call of a fresh process pays imports
_MIN_TIMEOUT = 60.0
_CPU_MIN_MS = 1000.0


def expected_digits(decimal: int) -> str:
    """Pi correctly rounded to `decimal` places, from the reference digits."""
    return str(Decimal(PI).quantize(Decimal(1).scaleb(-decimal), rounding=ROUND_HALF_UP))


def _seconds_between(a: str | None, b: str | None) -> float | None:
    if not a or not b:
        return None
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


class DigitsError(RuntimeError):
    """A task did not reach SUCCESS (failed, or not within its time bound)."""


def time_to_digits(client: httpx.Client, api: str, decimal: int, poll: float, timeout: float) -> dict[str, object]:
    """One measured task: wall time to a visible SUCCESS, with the task's own timings."""
    start = time.perf_counter()
    created = client.post(f"{api}/calcpi/{decimal}")
    if created.status_code != 202:
        raise DigitsError(f"POST /calcpi/{decimal} answered {created.status_code}: {created.text[:200]}")
    task_id = created.json()["id"]
    polls, tick = 0, start
    while True:
        body = client.get(f"{api}/task/{task_id}").json()
        polls += 1
        if body["status"] == "SUCCESS":
            wall = time.perf_counter() - start
            break
        if body["status"] == "FAILURE":
            raise DigitsError(f"task {task_id} (d={decimal}) failed: {body.get('error')}")
        if time.perf_counter() - start > timeout:
            raise DigitsError(f"task {task_id} (d={decimal}) not done after {timeout:.0f} s (status {body['status']})")
        # Fixed ticks, not fixed gaps: the poll's own round trip is part of the 2 ms.
        tick = max(tick + poll, time.perf_counter())
        time.sleep(max(0.0, tick - time.perf_counter()))
    waited = _seconds_between(body["pushqtime"], body["starttime"])
    computed = _seconds_between(body["starttime"], body["stoptime"])
    return {
        "decimal": decimal,
        "wall ms": round(wall * 1e3, 2),
        "polls": polls,
        "queued->started ms": round(waited * 1e3, 2) if waited is not None else "",
        "started->stopped ms": round(computed * 1e3, 2) if computed is not None else "",
        "terms": body["terms"],
        "digits": body["digits"],
        "correct": body["digits"] == expected_digits(decimal),
    }


def run(lab: Lab) -> Section:
    """Median time to proven digits for every decimal of the plan."""
    plan = lab.plan
    stack = lab.shared_stack()
    section = Section("digits", TITLE)
    rows: list[dict[str, object]] = []
    failures: list[str] = []
    with httpx.Client(timeout=10) as client, lab.watch.phase("digits"):
        for _ in range(_WARMUP):
            time_to_digits(client, stack.api, 3, plan.poll_interval, _MIN_TIMEOUT)
        for decimal in plan.decimals:
            runs = plan.digits_runs_long if decimal >= plan.long_decimal else plan.digits_runs
            timeout = max(_MIN_TIMEOUT, 2 * TARGET_MS.get(decimal, 0) / 1e3)
            walls = []
            for i in range(runs):
                try:
                    with cpu_use(stack) as cpu:
                        row = time_to_digits(client, stack.api, decimal, plan.poll_interval, timeout)
                    # The kernel counts CPU time in 10 ms ticks: only a run of a second or more says
                    # how much other processes took.
                    if float(row["wall ms"]) >= _CPU_MIN_MS:  # type: ignore[arg-type] - the raw row's values are typed object
                        row["others %"] = round(cpu.others * 100)
                        section.others.append(cpu.others * 100)
                except DigitsError as exc:
                    log.error("%s", exc)
                    failures.append(str(exc))
                    continue
                rows.append(row)
                walls.append(float(row["wall ms"]))  # type: ignore[arg-type] - the raw row's values are typed object
                log.info(
                    "d=%d run %d/%d: %.1f ms (%s polls, digits %s)",
                    decimal,
                    i + 1,
                    runs,
                    walls[-1],
                    row["polls"],
                    row["digits"],
                )
            target = TARGET_MS.get(decimal)
            value = statistics.median(walls) if walls else None
            passed = None if target is None else (value is not None and len(walls) == runs and value < target)
            section.add(
                f"d={decimal}",
                value,
                "ms",
                target=f"< {target:,.0f} ms" if target else "",
                passed=passed,
                runs=walls,
                how=f"median of {runs}",
                key=decimal in (6, 9, 10),
            )
    correct = sum(1 for r in rows if r["correct"])
    section.add(
        "digits correct",
        correct,
        f"of {len(rows) + len(failures)} runs",
        target="all",
        passed=correct == len(rows) + len(failures),
        key=True,
    )
    section.notes += [
        f"One task at a time on an idle product (WORKER_CONCURRENCY=2), after {_WARMUP} unmeasured warm-up "
        f"tasks; polled every {plan.poll_interval * 1e3:g} ms on one keep-alive connection (httpx).",
        f"{plan.digits_runs} runs per decimal below {plan.long_decimal}, {plan.digits_runs_long} from "
        f"{plan.long_decimal} up. queued->started and started->stopped come from the task's own times.",
    ]
    section.notes += [f"failed run: {f}" for f in failures]
    section.raw["every run"] = rows
    return section
