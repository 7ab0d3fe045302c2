"""The worker's metrics through the real product (supervisord's `worker` and `chunks` programs, two pool
processes each), scraped on WORKER_METRICS_PORT: a known workload gives exactly its numbers, a pool
process killed mid-task keeps its counts and loses its live gauge file, the chunks of a split task
(counted by the `chunks` program) are served by the `worker` program's one listener, and every log
line of both programs is one JSON object naming its task.

One stack: whole calculations up to d=9 (1.1e10 terms, ~2 s), d=10 split into chunks of 5e9 terms.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from testing.waiting import free_port, wait_for
from tests.faults.conftest import (
    FaultStack,
    computing_child,
    program_pid,
    running_stack,
    start_task,
    wait_ended,
    wait_running,
    wait_task,
    worker_children,
)
from worker import split

pytestmark = pytest.mark.timeout(300)

METRICS_PORT = free_port()
CALC_PI = "worker.calc_pi"


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(
        tmp_path_factory.mktemp("worker-metrics"),
        broker_url,
        WORKER_METRICS_PORT=str(METRICS_PORT),
        LOG_FORMAT="json",
        SPLIT_MIN_TERMS=str(15 * 10**9),
        SPLIT_CHUNK_TERMS=str(5 * 10**9),
        TASK_MAX_ATTEMPTS="3",
    ) as s:
        yield s


def scrape() -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """Every sample of the worker's /metrics: {sample name: {sorted labels: value}}."""
    r = httpx.get(f"http://127.0.0.1:{METRICS_PORT}/metrics", timeout=10)
    assert r.status_code == 200, r.text
    samples: dict[str, dict[tuple[tuple[str, str], ...], float]] = defaultdict(dict)
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            samples[sample.name][tuple(sorted(sample.labels.items()))] = sample.value
    return samples


def total(samples: dict, metric: str, **labels: str) -> float:
    """The sum of `metric` over the series whose labels include `labels` (e.g. over both programs)."""
    return sum(v for key, v in samples.get(metric, {}).items() if set(labels.items()) <= set(key))


def counts(samples: dict, name: str = CALC_PI) -> dict[str, float]:
    outcomes = ("started", "succeeded", "failed", "revoked", "retried")
    found = {o: total(samples, f"celery_task_{o}_total", name=name) for o in outcomes}
    found["runtime"] = total(samples, "celery_task_runtime_seconds_count", name=name)
    return found


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before[k] for k in after}


def metrics_folders(stack: FaultStack) -> list[Path]:
    return sorted((stack.root / "run" / "worker-metrics").iterdir())


def test_a_known_workload_gives_exactly_its_numbers(stack: FaultStack) -> None:
    # The stack's own first task (testing/stack.py waits for one d=1 task): nothing else ran yet. (Its run
    # ends, and is counted, a moment after it recorded SUCCESS.)
    wait_for(lambda: counts(scrape())["runtime"] == 1, 10, "the first task's end to be counted")
    before = scrape()
    assert counts(before) == {"started": 1, "succeeded": 1, "failed": 0, "revoked": 0, "retried": 0, "runtime": 1}
    assert total(before, "celery_worker_tasks_active") == 0

    # Two long tasks take both pool processes; five short ones wait behind them.
    long_a, long_b = start_task(stack, 9), start_task(stack, 9)
    wait_running(stack, long_a)
    wait_running(stack, long_b)
    busy = scrape()
    assert total(busy, "celery_worker_tasks_active") == 2
    short = [start_task(stack, d) for d in (3, 4, 5, 6, 7)]
    # Cancelled while waiting (the Thrift server records it; the worker then finds it REVOKED) and
    # while running (the worker stops it and records REVOKED).
    assert httpx.delete(f"{stack.api}/task/{short[-1]}", timeout=10).json()["status"] == "REVOKED"
    assert httpx.delete(f"{stack.api}/task/{long_a}", timeout=10).json()["status"] == "REVOKED"
    bodies = [wait_ended(stack, t, timeout=90) for t in (long_a, long_b, *short)]
    assert [b["status"] for b in bodies] == [
        "REVOKED",
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
        "SUCCESS",
        "REVOKED",
    ]
    # The last run ends a moment after its record: its postrun counts then.
    wait_for(lambda: counts(scrape())["runtime"] == 8, 10, "the last run's end to be counted")
    after = scrape()

    assert delta(counts(after), counts(before)) == {
        "started": 7,
        "succeeded": 5,
        "failed": 0,
        "revoked": 2,
        "retried": 0,
        "runtime": 7,
    }
    assert total(after, "celery_worker_tasks_active") == 0
    # Terms: exactly those the tasks recorded (a cancelled one: up to its last progress report).
    terms = sum(b["terms"] or 0 for b in bodies)
    assert total(after, "leibniz_terms_total") - total(before, "leibniz_terms_total") == terms
    rates = total(after, "leibniz_terms_per_second_count") - total(before, "leibniz_terms_per_second_count")
    assert rates == sum(1 for b in bodies if (b["terms"] or 0) >= 10**6)  # the run cancelled midway too
    # Summed over the processes that counted: the two that ran the long tasks at once, each its own files.
    [worker_folder] = [f for f in metrics_folders(stack) if f.name.startswith(f"{program_pid(stack, 'worker')}.")]
    writers = {p.stem.rpartition("_")[2] for p in worker_folder.glob("counter_*.db")}
    assert len(writers - {str(program_pid(stack, "worker"))}) >= 2, writers
    print(f"known workload: counters {delta(counts(after), counts(before))}, {terms} terms, {len(writers)} writers")


def test_a_killed_pool_process_keeps_its_counts_and_loses_its_live_gauge(stack: FaultStack) -> None:
    before = scrape()
    task_id = start_task(stack, 9)
    wait_running(stack, task_id)
    victim = computing_child(stack)
    folder = next(f for f in metrics_folders(stack) if f.name.startswith(f"{program_pid(stack, 'worker')}."))
    live = folder / f"gauge_livesum_{victim.pid}.db"
    assert live.exists() and (folder / f"counter_{victim.pid}.db").exists()
    victim.kill()
    victim.wait(10)
    # The replacement pool process removes it as it starts, before any scrape.
    wait_for(
        lambda: len(worker_children(stack)) == 2 and victim.pid not in [c.pid for c in worker_children(stack)],
        30,
        "the pool process to be replaced",
    )
    wait_for(lambda: not live.exists(), 10, f"{live.name} to be removed")
    assert (folder / f"counter_{victim.pid}.db").exists() and (folder / f"histogram_{victim.pid}.db").exists()

    body = wait_ended(stack, task_id, timeout=90)
    assert body["status"] == "SUCCESS" and body["attempts"] == 2, body
    wait_for(lambda: counts(scrape())["runtime"] - counts(before)["runtime"] == 1, 10, "the run's end to be counted")
    after = scrape()
    # Two runs started (the killed one's count is still summed), one ended: the killed run never did.
    assert delta(counts(after), counts(before)) == {
        "started": 2,
        "succeeded": 1,
        "failed": 0,
        "revoked": 0,
        "retried": 0,
        "runtime": 1,
    }
    assert total(after, "celery_worker_tasks_active") == 0  # the dead process's 1 no longer counts


def test_the_chunk_programs_counts_are_served_by_the_worker_programs_listener(stack: FaultStack) -> None:
    before = scrape()
    task_id = start_task(stack, 10)
    body = wait_task(stack, task_id, "to succeed", lambda b: b["status"] == "SUCCESS", timeout=240)
    chunks = body["chunks_total"]
    assert chunks >= 5, body
    wait_for(
        lambda: (
            counts(scrape(), "worker.combine_chunks")["runtime"] > counts(before, "worker.combine_chunks")["runtime"]
        ),
        10,
        "the combining step's end to be counted",
    )
    after = scrape()
    chunk_node = f"pi-{stack.queue}-chunks@{os.uname().nodename}"
    assert delta(counts(after, "worker.calc_chunk"), counts(before, "worker.calc_chunk")) == {
        "started": chunks,
        "succeeded": chunks,
        "failed": 0,
        "revoked": 0,
        "retried": 0,
        "runtime": chunks,
    }
    done = [(dict(k), v) for k, v in after["split_chunks_total"].items() if dict(k)["outcome"] == "done"]
    assert [labels["hostname"] for labels, _ in done] == [chunk_node]  # counted by the `chunks` program
    assert (
        total(after, "split_chunks_total", outcome="done") - total(before, "split_chunks_total", outcome="done")
        == chunks
    )
    assert delta(counts(after, "worker.combine_chunks"), counts(before, "worker.combine_chunks"))["succeeded"] >= 1
    # The chunks computed every term after the plan's prefix, each once.
    chunk_terms = total(after, "leibniz_terms_total", hostname=chunk_node) - total(
        before, "leibniz_terms_total", hostname=chunk_node
    )
    assert chunk_terms == body["terms"] - 2 * split.PLAN_PAIRS
    assert len(metrics_folders(stack)) == 2  # one folder per running program, nothing stale


def test_every_log_line_is_json_and_names_its_task(stack: FaultStack) -> None:
    time.sleep(0.5)  # the last lines of the tests above reach the files
    named = re.compile(r"(?:worker\.[a-z_]+\[|task )([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})")
    for name in ("worker.log", "chunks.log"):
        lines = [json.loads(line) for line in (stack.log_dir / name).read_text().splitlines()]  # each one object
        assert lines and all(line["process"] == "worker" and line["ts"].endswith("Z") for line in lines)
        about = [(line, m.group(1)) for line in lines if (m := named.search(line["msg"]))]
        assert len(about) >= 10, name  # chunks.log: "received" and "succeeded" of each chunk
        # Every line about one of our tasks (Celery's and ours, either process) names it as task_id.
        assert [line for line, task_id in about if line.get("task_id") != task_id] == [], name
