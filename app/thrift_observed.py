"""ObservedThrift: the gateway's Thrift calls counted (metrics) and traced (a client span each).

It wraps the client the routes call (ThriftReplicas) and has the same `call`. One call here is one
call of a route: its retries on other replicas are inside it, and its outcome is the one the route
sees. While the span is current, the client (in THeader mode when tracing is on) writes its context
into the request, so the Thrift server's span becomes its child, and names the replica it reached as
the span's peer.

With metrics and tracing both off, create_app does not wrap the client at all.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from app.errors import ComputeDropped, ComputeTimeout, ComputeUnreachable
from app.metrics import GatewayMetrics
from app.thrift_client import IDL_ERRORS, ThriftCaller
from app.tracing import is_suppressed

#: The service name the IDL gives (rpcinterface.thrift): the spans' rpc.service.
SERVICE = "RPCcelery"


def outcome_of(exc: BaseException) -> str:
    """The metrics' outcome (app.metrics.OUTCOMES) of a call that raised `exc`."""
    if isinstance(exc, IDL_ERRORS):
        return "idl_error"  # a declared exception: a normal answer (unknown task, bad decimal...)
    if isinstance(exc, ComputeTimeout):
        return "timeout"
    if isinstance(exc, ComputeUnreachable):
        return "unavailable"
    if isinstance(exc, ComputeDropped):
        return "dropped"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "failed"  # ComputeFailed (an internal error of the server), or a bug of ours


class ObservedThrift:
    """A ThriftCaller that counts and traces each call of `inner` (either may be None: off)."""

    def __init__(self, inner: ThriftCaller, *, metrics: GatewayMetrics | None, tracer: Tracer | None) -> None:
        self.inner = inner
        self.metrics = metrics
        self.tracer = tracer

    async def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """`inner.call`, counted by outcome and traced as a client span named after the IDL method."""
        started = time.perf_counter()
        outcome = "failed"
        span = None
        # Suppressed in the event streams' shared poll loops (app/tracing.py: untraced_context).
        if self.tracer is not None and not is_suppressed():
            span = self.tracer.start_span(
                method,
                kind=SpanKind.CLIENT,
                attributes={
                    "rpc.system": "apache_thrift",
                    "rpc.service": SERVICE,
                    "rpc.method": method,
                },
            )
        try:
            if span is None:
                result = await self.inner.call(method, *args, idempotent=idempotent)
            else:
                # attach/detach rather than trace.use_span: the span is ended and its exception
                # recorded below, with the call's outcome (use_span would record it a second time).
                token = otel_context.attach(trace.set_span_in_context(span))
                try:
                    result = await self.inner.call(method, *args, idempotent=idempotent)
                finally:
                    otel_context.detach(token)
            outcome = "ok"
            return result
        except BaseException as exc:
            outcome = outcome_of(exc)
            if span is not None:
                _record(span, exc, outcome)
            raise
        finally:
            if span is not None:
                span.end()
            if self.metrics is not None:
                self.metrics.observe_call(method, outcome, time.perf_counter() - started)


def _record(span: trace.Span, exc: BaseException, outcome: str) -> None:
    span.set_attribute("error.type", type(exc).__name__)
    span.set_attribute("rpc.thrift.outcome", outcome)
    if outcome == "idl_error":
        return  # the server answered as its contract says: not an error of the call
    span.record_exception(exc)
    span.set_status(StatusCode.ERROR, str(exc) or outcome)
