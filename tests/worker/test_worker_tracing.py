"""Tracing and JSON logs of a real worker (a `celery worker` subprocess, prefork pool of two, its own
queues), fed a calc_pi message built as the Thrift server builds it (`as_task_v2`) with a W3C
`traceparent` among its headers: the task's span is that context's child, a split task's chunks and
combining step have spans of their own in the same trace, and every JSON log line parses and names the
task (and, inside the task, its trace)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from testing.waiting import wait_for
from tests.worker.observed import OtlpSink, WorkerRun, publish_calc_pi

pytestmark = pytest.mark.timeout(180)


def traceparent() -> tuple[str, str, str]:
    trace_id, span_id = secrets.token_hex(16), secrets.token_hex(8)
    return f"00-{trace_id}-{span_id}-01", trace_id, span_id


@pytest.fixture(scope="module", params=["files", "redis"])
def traced(
    request: pytest.FixtureRequest, broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[WorkerRun, OtlpSink]]:
    # Both state backends: the chord's combining step is published by celery.chord_unlock on the SQLite
    # result backend (files), by the last chunk on Redis.
    root: Path = tmp_path_factory.mktemp("traced")
    with OtlpSink().running() as sink:
        run = WorkerRun(
            root,
            broker_url,
            backend=request.param,
            redis_url=redis_url,
            env={
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": sink.endpoint,
                "OTEL_BSP_SCHEDULE_DELAY": "100",
                "LOG_FORMAT": "json",
                # d=3 stays whole (10,880 terms); d=7 is split into chunks of 2e6 terms.
                "SPLIT_MIN_TERMS": "1000000",
                "SPLIT_CHUNK_TERMS": "2000000",
            },
        )
        try:
            run.start()
            yield run, sink
        finally:
            run.stop()
            run.clean_up()


def run_traced(run: WorkerRun, decimal: int, header: str) -> str:
    task_id = str(uuid.uuid4())
    run.write_waiting(task_id, decimal)
    publish_calc_pi(run.broker_url, run.queue, task_id, decimal, {"traceparent": header, "tracestate": "pi=test"})
    wait_for(
        lambda: run.read_state(task_id).status == "SUCCESS",
        60,
        f"task {task_id} to succeed (log: {run.log})",
        interval=0.05,
    )
    return task_id


def test_the_task_span_is_the_child_of_the_traceparent_in_its_message(traced: tuple[WorkerRun, OtlpSink]) -> None:
    run, sink = traced
    header, trace_id, parent = traceparent()
    task_id = run_traced(run, 3, header)
    spans = wait_for(
        lambda: [s for s in sink.named("run/worker.calc_pi") if s.attributes.get("pi.task_id") == task_id],
        30,
        "the calc_pi span to be exported",
    )
    assert len(spans) == 1
    span = spans[0]
    assert (span.trace_id, span.parent_span_id) == (trace_id, parent), span
    assert span.attributes["celery.task_name"] == "worker.calc_pi"


def test_chunks_and_the_combining_step_have_spans_in_the_same_trace(traced: tuple[WorkerRun, OtlpSink]) -> None:
    run, sink = traced
    header, trace_id, parent = traceparent()
    task_id = run_traced(run, 7, header)
    chunks = run.read_state(task_id).chunks
    assert chunks is not None and chunks.total >= 3, chunks

    def in_trace() -> list | None:
        spans = [s for s in sink.spans if s.trace_id == trace_id]
        return (
            spans
            if [s.name for s in spans].count("run/worker.calc_chunk") >= chunks.total
            and "run/worker.combine_chunks" in [s.name for s in spans]
            else None
        )

    spans = wait_for(in_trace, 30, "the chunks' and the combining step's spans")
    by_id = {s.span_id: s for s in spans}
    [task_span] = [s for s in spans if s.name == "run/worker.calc_pi"]
    assert task_span.parent_span_id == parent
    chunk_spans = [s for s in spans if s.name == "run/worker.calc_chunk"]
    assert len(chunk_spans) == chunks.total
    for chunk in chunk_spans:
        # run/worker.calc_chunk <- apply_async/worker.calc_chunk (published by calc_pi) <- run/worker.calc_pi
        publish = by_id[chunk.parent_span_id]
        assert publish.name == "apply_async/worker.calc_chunk" and publish.parent_span_id == task_span.span_id
        assert chunk.attributes["pi.task_id"] == task_id
    combine = [s for s in spans if s.name == "run/worker.combine_chunks"]
    assert combine and all(s.attributes["pi.task_id"] == task_id for s in combine)
    unlocks = [s for s in sink.named("run/celery.chord_unlock") if s.attributes.get("pi.task_id") == task_id]
    assert all(s.trace_id == trace_id for s in unlocks)  # (none on the Redis result backend)
    print(
        f"split d=7 on {run.backend}: {len(spans)} spans in one trace ({chunks.total} chunks, "
        f"{len(unlocks)} chord_unlock runs)"
    )


def test_json_log_lines_parse_and_name_the_task_and_its_trace(traced: tuple[WorkerRun, OtlpSink]) -> None:
    run, _ = traced
    header, trace_id, _ = traceparent()
    task_id = run_traced(run, 4, header)
    lines = [json.loads(line) for line in run.lines()]  # every line is one JSON object
    assert all(
        {"ts", "level", "logger", "process", "msg"} <= line.keys() and line["process"] == "worker" for line in lines
    )
    about = [line for line in lines if task_id in line["msg"] or line.get("task_id") == task_id]
    loggers = {line["logger"] for line in about}
    # Celery's own lines (received in the main process, succeeded in the pool process) and ours.
    assert {"celery.worker.strategy", "celery.app.trace", "worker.recording"} <= loggers, about
    assert all(line.get("task_id") == task_id for line in about), about
    in_task = [line for line in about if line["logger"] != "celery.worker.strategy"]
    assert in_task and all(
        line.get("trace_id") == trace_id and len(line.get("span_id", "")) == 16 for line in in_task
    ), in_task
