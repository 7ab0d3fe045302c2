"""Tracing of the Thrift server with OpenTelemetry (docs/observability.md): off unless
OTEL_TRACES_EXPORTER names `otlp` or `console`.

When on: a server span per call (tserver/observed.py), named after the IDL method and continuing the
trace whose W3C `traceparent`/`tracestate` came in the request's THeader info headers (a missing or
malformed one starts a new trace: the propagator finds no parent, never an error); and a producer span
per publish (tserver/publishing.py), the call's span's child, whose context goes into the Celery
message's headers, where the worker's Celery instrumentation reads it. The standard OTEL_* variables
apply: the exporter's endpoint and headers, OTEL_SERVICE_NAME (`tserver` unless set),
OTEL_TRACES_SAMPLER, OTEL_BSP_* for the batching, OTEL_PROPAGATORS.

When off: no tracer provider is made (nothing of ours imports the SDK); the server and the publisher are
given no tracer and make no span at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.propagators.textmap import Getter

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

SERVICE = "tserver"


def make_provider(exporters: list[str]) -> TracerProvider:
    """A tracer provider exporting in batches (a thread of its own) to each of `exporters`, made the
    process's global one."""
    # Imported here: with tracing off the server never loads the SDK.
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: SERVICE}))
    provider = TracerProvider(resource=resource)  # the sampler from OTEL_TRACES_SAMPLER
    for name in exporters:
        provider.add_span_processor(BatchSpanProcessor(_exporter(name)))
    trace.set_tracer_provider(provider)
    return provider


def _exporter(name: str) -> SpanExporter:
    from opentelemetry.sdk.trace.export import ConsoleSpanExporter

    if name == "console":
        return ConsoleSpanExporter()
    # OTLP over HTTP (protobuf): its endpoint, headers and timeout from OTEL_EXPORTER_OTLP_[TRACES_]*.
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


class _InfoHeaders(Getter[Mapping[bytes, bytes]]):
    """Reads THeader info headers (bytes, as thrift decodes them) for the propagators."""

    def get(self, carrier: Mapping[bytes, bytes], key: str) -> list[str] | None:
        value = carrier.get(key.encode())
        # latin-1 maps every byte: a value that is not a valid traceparent is the propagator's to refuse.
        return None if value is None else [value.decode("latin-1")]

    def keys(self, carrier: Mapping[bytes, bytes]) -> list[str]:
        return [key.decode("latin-1") for key in carrier]


_INFO_HEADERS = _InfoHeaders()


def parent_context(headers: Mapping[bytes, bytes]) -> otel_context.Context:
    """The context a call's span continues: the trace in its info headers, or none (a new trace).
    Never from the caller's current context, which is the server's, not the client's."""
    return propagate.extract(headers, context=otel_context.Context(), getter=_INFO_HEADERS)
