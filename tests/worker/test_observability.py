"""The worker's counting, naming and log lines, in this process: Celery's signals sent as a worker sends
them (worker/metrics.py, worker/context.py), log records through the filter and formatters
(worker/logs.py). The real worker: test_worker_tracing.py, test_metrics_files.py, tests/faults/."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from celery import signals
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import use_span

from state.records import FAILURE, REVOKED
from worker import context, logs, metrics

NODE = "pi-test@host"


@pytest.fixture(autouse=True)
def node() -> None:
    metrics.set_node(NODE)


def value(metric: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(metric, {"hostname": NODE, **labels}) or 0.0


class FakeTask:
    """What the handlers read of a Celery task: its name and its request's root id (hashable, as a sender)."""

    def __init__(self, name: str, root_id: str | None = None) -> None:
        self.name = name
        self.request = SimpleNamespace(root_id=root_id)


def fake_task(name: str, root_id: str | None = None) -> Any:
    return FakeTask(name, root_id)


def run(task: Any, args: tuple, outcome: str | None = None, result: Any = None, raises: bool = False) -> None:
    """One task run as a worker signals it: prerun, the body (which may record an end), the end, postrun."""
    celery_id = str(uuid.uuid4())
    signals.task_prerun.send(sender=task, task_id=celery_id, task=task, args=args, kwargs={})
    if outcome:
        metrics.note_outcome(outcome)
    if raises:
        signals.task_failure.send(sender=task, task_id=celery_id, exception=ValueError("x"), args=args, kwargs={})
    else:
        signals.task_success.send(sender=task, result=result)
    signals.task_postrun.send(sender=task, task_id=celery_id, task=task, args=args, kwargs={}, retval=result)


def test_runs_are_counted_by_outcome_as_the_user_sees_it() -> None:
    name = "worker.calc_pi"
    before = {k: value(f"celery_task_{k}_total", name=name) for k in ("started", "succeeded", "revoked", "failed")}
    runtime_before = value("celery_task_runtime_seconds_count", name=name)
    task = fake_task(name)
    run(task, (str(uuid.uuid4()), 3))
    run(task, (str(uuid.uuid4()), 9), outcome=REVOKED)  # cancelled: Celery saw it return normally
    run(task, (str(uuid.uuid4()), 9), outcome=FAILURE)  # gave up after its worker died too often
    run(task, (str(uuid.uuid4()), 9), raises=True)
    after = {k: value(f"celery_task_{k}_total", name=name) for k in before}
    assert {k: after[k] - before[k] for k in after} == {"started": 4, "succeeded": 1, "revoked": 1, "failed": 2}
    assert value("celery_task_runtime_seconds_count", name=name) - runtime_before == 4
    assert value("celery_worker_tasks_active") == 0


def test_chunks_are_counted_by_outcome() -> None:
    chunk = fake_task("worker.calc_chunk")
    outcomes = ("done", "skipped", "failed", "revoked")
    before = {o: value("split_chunks_total", outcome=o) for o in outcomes}
    task_id = str(uuid.uuid4())
    run(chunk, (task_id, 0, 0, 10), result={"k": 0, "total": "1", "error": "0"})
    run(chunk, (task_id, 1, 10, 20), result={"k": 1, "skipped": "REVOKED"}, outcome=REVOKED)
    run(chunk, (task_id, 2, 20, 30), result={"k": 2, "skipped": FAILURE}, outcome=FAILURE)
    run(chunk, (task_id, 3, 30, 40), raises=True)
    signals.task_revoked.send(
        sender=chunk, request=SimpleNamespace(args=(task_id, 4, 40, 50)), terminated=False, signum=None, expired=False
    )
    after = {o: value("split_chunks_total", outcome=o) for o in outcomes}
    assert {o: after[o] - before[o] for o in outcomes} == {"done": 1, "skipped": 1, "failed": 2, "revoked": 1}


def test_terms_and_their_rate() -> None:
    terms, rates = value("leibniz_terms_total"), value("leibniz_terms_per_second_count")
    metrics.terms_computed(4_000_000_000, 0.5)
    metrics.terms_computed(10_880, 0.001)  # too few terms to say anything about the rate
    assert value("leibniz_terms_total") - terms == 4_000_010_880
    assert value("leibniz_terms_per_second_count") - rates == 1
    assert value("leibniz_terms_per_second_bucket", le="8e+09") >= 1


def test_our_task_id_from_a_runs_arguments() -> None:
    ours = str(uuid.uuid4())
    assert context.our_task_id("worker.calc_pi", (ours, 3)) == ours
    assert context.our_task_id("worker.calc_chunk", (ours, 2, 0, 100)) == ours
    assert context.our_task_id("worker.combine_chunks", ([{"k": 0}], ours, 10, "0", "0", [])) == ours
    assert context.our_task_id("celery.chord_unlock", (str(uuid.uuid4()), {}), root_id=ours) == ours
    assert context.our_task_id("worker.calc_pi", ("../../etc/passwd", 3)) is None
    assert context.our_task_id("worker.calc_pi", ()) is None


def test_our_task_id_from_celerys_lines_outside_a_task() -> None:
    ours = str(uuid.uuid4())
    assert context.named_in_text(f"Task worker.calc_chunk[{ours}.0.12] received") == ours
    assert context.named_in_text(f"Discarding revoked task: worker.calc_chunk[{ours}.1.3]") == ours
    assert context.named_in_text(f"Task worker.calc_pi[{ours}] succeeded in 0.01s: None") == ours
    unlock = {
        "args": f"('{uuid.uuid4()}', {{'task': 'worker.combine_chunks', 'options': {{'task_id': '{ours}.0.combine'}}}})"
    }
    assert context.named_in_text(f"Task celery.chord_unlock[{uuid.uuid4()}] received", unlock) == ours
    assert context.named_in_text(f"Task celery.chord_unlock[{uuid.uuid4()}] received") is None


def record(msg: str, name: str = "worker.tasks", exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord(name, logging.INFO, __file__, 1, msg, (), exc_info)
    logs.TaskContext().filter(rec)
    return rec


def test_a_json_line_inside_a_task_names_it_and_its_trace() -> None:
    ours = str(uuid.uuid4())
    task = fake_task("worker.calc_pi")
    span = TracerProvider().get_tracer("test").start_span("run/worker.calc_pi")  # no global provider set
    signals.task_prerun.send(sender=task, task_id=ours, task=task, args=(ours, 3), kwargs={})
    try:
        with use_span(span, end_on_exit=True):
            line = json.loads(logs.JsonFormatter().format(record("computing", exc=True)))
    finally:
        signals.task_postrun.send(sender=task, task_id=ours, task=task, args=(ours, 3), kwargs={}, retval=None)
    context_ids = span.get_span_context()
    assert line["task_id"] == ours and line["process"] == "worker" and line["level"] == "INFO"
    assert line["trace_id"] == format(context_ids.trace_id, "032x")
    assert line["span_id"] == format(context_ids.span_id, "016x")
    assert line["ts"].endswith("Z") and "RuntimeError: boom" in line["exc"] and line["msg"] == "computing"
    # After the task: nothing of it sticks to the next line.
    assert set(json.loads(logs.JsonFormatter().format(record("idle")))) == {"ts", "level", "logger", "process", "msg"}


def test_a_text_line_gets_the_ids_its_text_lacks() -> None:
    ours = str(uuid.uuid4())
    text = logs.TextFormatter(logging.Formatter("%(levelname)s %(message)s"))
    line = text.format(record(f"Task worker.calc_chunk[{ours}.0.3] received", name="celery.worker.strategy"))
    assert line == f"INFO Task worker.calc_chunk[{ours}.0.3] received"  # the id is in the text already
    rec = record("a line")
    rec.task_id = ours
    assert text.format(rec) == f"INFO a line [task_id={ours}]"
