"""Tracing of the gateway with OpenTelemetry (docs/observability.md): off unless OTEL_TRACES_EXPORTER says
`otlp` or `console`.

When on: a server span per HTTP request, named after its route template (`GET /task/{id}`), continuing
the trace of an incoming W3C `traceparent` (a malformed one starts a new trace); and a client span per
Thrift call (app/thrift_observed.py) whose context the Thrift client sends in THeader info headers. The
standard OTEL_* variables apply: the exporter's endpoint and headers, OTEL_SERVICE_NAME (`gateway`
unless set), OTEL_TRACES_SAMPLER, OTEL_BSP_* for the batching, OTEL_PROPAGATORS.

When off: no tracer provider, no telemetry layer, and the Thrift client speaks plain framed binary;
nothing costs more than before.

The server spans come from FastAPI's own OpenTelemetry layer (FastAPI(telemetry=...), FastAPI 0.163)
rather than opentelemetry-instrumentation-fastapi: side by side on a status read, one request cost
175 us of CPU with FastAPI's layer and 258 us with the instrumentation, which walks every route a
second time to name the span and collects the older semantic conventions' attributes; and it needs
no package beyond FastAPI.
"""

from __future__ import annotations

import contextvars
from collections.abc import MutableMapping
from typing import Any

from fastapi.telemetry import TelemetryConfig
from opentelemetry import context as otel_context
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.trace import Tracer

#: Not traced: Prometheus' scrapes and health checks come every few seconds and say nothing about a task.
UNTRACED_PATHS = frozenset({"/metrics", "/livez"})
# FastAPI's own layer does the server spans alone: no metrics or log records of its own (the metrics
# are Prometheus', app/metrics.py), no span per dependency and serialization step, and no exporters
# of its own from the environment (FASTAPI_OTEL_AUTO_CONFIGURE): make_provider sets them up.
_FASTAPI_OFF: TelemetryConfig = {
    "tracing": False,
    "metrics": False,
    "logs": False,
    "operation_spans": False,
    "auto_configure": False,
}


def make_provider(exporters: list[str]) -> TracerProvider:
    """A tracer provider exporting in batches (a thread of its own) to each of `exporters`."""
    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "gateway"}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    return provider


def _exporter(name: str) -> SpanExporter:
    if name == "console":
        return ConsoleSpanExporter()
    # OTLP over HTTP (protobuf): its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_[TRACES_]*.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def fastapi_telemetry(provider: TracerProvider | None) -> TelemetryConfig:
    """FastAPI's `telemetry` setting: server spans to `provider`, or nothing at all without one.

    Off is said explicitly: FastAPI's layer would otherwise turn itself on as soon as anything in the
    process sets a global provider.
    """
    if provider is None:
        return _FASTAPI_OFF
    return {**_FASTAPI_OFF, "tracing": True, "tracer_provider": provider, "exclude": _untraced}


def _untraced(scope: MutableMapping[str, Any]) -> bool:
    return scope.get("path") in UNTRACED_PATHS


def client_tracer(provider: TracerProvider) -> Tracer:
    """The tracer of the Thrift client spans."""
    return provider.get_tracer("app.thrift_observed")


def is_suppressed() -> bool:
    """True in a context made by untraced_context (or by an instrumentation's suppress_instrumentation)."""
    return bool(otel_context.get_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY))


def untraced_context() -> contextvars.Context:
    """A copy of the current context with no current span and instrumentation suppressed.

    For the event streams' shared poll loops (app/feeds.py): they outlive the request that started
    them and poll four times a second for as long as anyone watches, so they must not become children
    of that request's span, nor a root trace at every poll. Their calls are still counted (metrics),
    and their log lines still name the task they poll.
    """
    ctx = contextvars.copy_context()
    # The key the instrumentations' suppress_instrumentation() sets; set here without a block to exit.
    suppressed = otel_context.set_value(otel_context._SUPPRESS_INSTRUMENTATION_KEY, True, otel_context.Context())
    ctx.run(otel_context.attach, suppressed)
    return ctx
