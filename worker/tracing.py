"""OpenTelemetry traces of the worker: off unless OTEL_TRACES_EXPORTER is otlp or console.

opentelemetry-instrumentation-celery makes the spans: `run/<task name>` for every task run, a child of
the context its message carries, and `apply_async/<task name>` for every message a task publishes (a
split calculation's chunks, the chord's combining step, a retry), whose context it writes into that
message. The context travels as the W3C headers `traceparent` and `tracestate` (and `baggage`: the
default propagators, OTEL_PROPAGATORS) among the message's headers, which Celery copies onto
`task.request`, where the instrumentation reads them. A publisher of ours (the Thrift server) puts them
into the headers dict that `app.amqp.as_task_v2` returns, e.g. with `opentelemetry.propagate.inject`.

The tracer provider is made in each pool process (worker_process_init), not in the main process before
the fork: a BatchSpanProcessor's thread does not survive a fork. The solo pool sends the same signal in
the main process. Spans still buffered when a pool process is killed are lost; an orderly exit flushes.
"""

from __future__ import annotations

import os
from typing import Any

from celery import signals
from opentelemetry import trace

from worker import context
from worker.app import settings

#: The service name when OTEL_SERVICE_NAME does not say (the same word as the `process` of our log lines).
SERVICE = "worker"
_provider: list[Any] = []


def enabled() -> bool:
    return settings.OTEL_TRACES_EXPORTER in ("otlp", "console")


def setup() -> None:
    """This process's tracer provider and the Celery instrumentation (once per process)."""
    if _provider or not enabled():
        return
    # Imported here: with tracing off the worker never loads the SDK or the exporter.
    from opentelemetry.instrumentation.celery import CeleryInstrumentor
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: SERVICE}
    provider = TracerProvider(resource=Resource.create(attributes))  # sampler: OTEL_TRACES_SAMPLER
    exporter: SpanExporter
    if settings.OTEL_TRACES_EXPORTER == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()  # OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS, _TIMEOUT
    else:
        exporter = ConsoleSpanExporter()
    provider.add_span_processor(BatchSpanProcessor(exporter))  # OTEL_BSP_* tune it
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)  # type: ignore[no-untyped-call]  # unannotated upstream
    # Connected after the instrumentation's own handler, so the run span exists when this one runs.
    signals.task_prerun.connect(_annotate, weak=False)
    _provider.append(provider)


def shutdown() -> None:
    """Export the spans still buffered (an orderly exit of the process)."""
    while _provider:
        _provider.pop().shutdown()


def _annotate(**_: Any) -> None:
    # Our task id on the span: a chunk's Celery id is not the id a user knows.
    task_id = context.current()
    if task_id:
        trace.get_current_span().set_attribute("pi.task_id", task_id)


def _process_init(**_: Any) -> None:
    setup()


def _process_exit(**_: Any) -> None:
    shutdown()


signals.worker_process_init.connect(_process_init, weak=False)
signals.worker_process_shutdown.connect(_process_exit, weak=False)
signals.worker_shutdown.connect(_process_exit, weak=False)  # the solo pool's process
