"""ObservedCalls: the CallObserver (tserver/runtime/observer.py) that counts each call (metrics) and
traces it (a server span), either of which may be off.

The span is named after the IDL method (`unknown` for a name the IDL does not have, as the metrics
label it), has `rpc.system=apache_thrift`, `rpc.service` and `rpc.method`, continues the trace found in
the request's THeader info headers (tserver/tracing.py), and is made current for the call's asyncio
task, so the handler's log lines and the publish span below it see it. A declared IDL exception is an
answer the contract foresees: the span says so (`rpc.thrift.outcome`) but is not an error.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from contextvars import Token
from typing import Any, NamedTuple, cast

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from tserver.metrics import ServerMetrics
from tserver.runtime.observer import IDL_ERROR, OK, UNKNOWN
from tserver.tracing import parent_context

#: The service the IDL names (rpcinterface.thrift): the spans' rpc.service.
SERVICE = "RPCcelery"


class _Call(NamedTuple):
    method: str
    started: float
    span: trace.Span | None
    attached: Token[otel_context.Context] | None  # to detach at the end


class ObservedCalls:
    """Counts and traces the calls of one server (`metrics`, `tracer`: None for off, not both)."""

    def __init__(self, *, metrics: ServerMetrics | None, tracer: Tracer | None) -> None:
        self.metrics = metrics
        self.tracer = tracer

    def begin(self, method: str, headers: Mapping[bytes, bytes]) -> object:
        started = time.perf_counter()
        if self.tracer is None:
            return _Call(method, started, None, None)
        attributes: dict[str, Any] = {"rpc.system": "apache_thrift", "rpc.service": SERVICE}
        if method != UNKNOWN:
            attributes["rpc.method"] = method
        span = self.tracer.start_span(
            method, context=parent_context(headers), kind=SpanKind.SERVER, attributes=attributes
        )
        # Attached in the call's own task (its context is a copy of its own): detached in `end`, same task.
        return _Call(method, started, span, otel_context.attach(trace.set_span_in_context(span)))

    def end(self, token: object, outcome: str, error: BaseException | None = None) -> None:
        method, started, span, attached = cast(_Call, token)
        if self.metrics is not None:
            self.metrics.observe_call(method, outcome, time.perf_counter() - started)
        if span is None:
            return
        if attached is not None:
            otel_context.detach(attached)
        if outcome != OK:
            span.set_attribute("rpc.thrift.outcome", outcome)
            if outcome != IDL_ERROR:
                if error is not None:
                    span.record_exception(error)
                span.set_status(StatusCode.ERROR, outcome if error is None else f"{outcome}: {type(error).__name__}")
        span.end()

    def rejected(self) -> None:
        if self.metrics is not None:
            self.metrics.rejected()
