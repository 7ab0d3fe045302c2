"""Traces of the Thrift server (in-memory span exporter): a server span per call continuing the trace of the
THeader `traceparent` (anything else starts a new one, never an error), current while the handler runs;
the publish span its child, and its context in the Celery message's headers where the worker's Celery
instrumentation finds it (real RabbitMQ: the message read back from a queue of the test's own)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from RPC.ttypes import BadTask, calcResult
from state.backends import open_catalog
from state.config import StateSettings
from tests.tserver.publishing_harness import _get_all
from tests.tserver.runtime_harness import KNOWN, Handler, connect, encode_call, frame, stock_client
from tests.tserver.theader_wire import header_client
from tserver.handler import RPCceleryHandler
from tserver.observed import ObservedCalls
from tserver.publishing import PUBLISH_SPAN, TaskPublisher

TRACE = "0af7651916cd43dd8448eb211c80319c"
PARENT = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01".encode()


@pytest.fixture
def spans() -> Iterator[tuple[trace.Tracer, InMemorySpanExporter]]:
    """A tracer of a provider of its own (not the process's global one) exporting to memory."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider.get_tracer("test"), exporter
    provider.shutdown()


class Seeing(Handler):
    """Remembers which span was current while each method ran."""

    def __init__(self) -> None:
        super().__init__(delay=0.01)
        self.seen: dict[str, trace.SpanContext] = {}

    async def queueCalcPi(self, decimal: int) -> calcResult:
        self.seen["queueCalcPi"] = trace.get_current_span().get_span_context()
        return await super().queueCalcPi(decimal)

    def getTaskStatus(self, uuid: str) -> calcResult:  # a plain method: run in the pool
        self.seen["getTaskStatus"] = trace.get_current_span().get_span_context()
        return super().getTaskStatus(uuid)


def only(exporter: InMemorySpanExporter, name: str | None = None) -> ReadableSpan:
    found = [s for s in exporter.get_finished_spans() if name is None or s.name == name]
    assert len(found) == 1, [s.name for s in exporter.get_finished_spans()]
    return found[0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("compact", [False, True], ids=["binary", "compact"])
def test_the_call_span_continues_the_trace_of_the_theader_traceparent(make_server, spans, compact):
    tracer, exporter = spans
    handler = Seeing()
    srv = make_server(handler=handler, observer=ObservedCalls(metrics=None, tracer=tracer))
    for method in ("getTaskStatus", "queueCalcPi"):
        exporter.clear()
        with header_client(srv.port, compact=compact) as client:
            client._iprot.trans.set_header(b"traceparent", TRACEPARENT)
            client._iprot.trans.set_header(b"tracestate", b"vendor=opaque")
            assert (client.getTaskStatus(KNOWN) if method == "getTaskStatus" else client.queueCalcPi(3)) is not None
        span = only(exporter)
        assert (span.name, span.kind) == (method, SpanKind.SERVER)
        assert span.context.trace_id == int(TRACE, 16)
        assert span.parent is not None and span.parent.is_remote and span.parent.span_id == int(PARENT, 16)
        assert span.context.trace_state.get("vendor") == "opaque"
        assert span.attributes == {"rpc.system": "apache_thrift", "rpc.service": "RPCcelery", "rpc.method": method}
        assert span.status.status_code == StatusCode.UNSET
        # Current while the handler ran, on the loop and in the pool alike.
        assert handler.seen[method] == span.context


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "traceparent",
    [
        b"garbage",
        b"",
        b"00-" + b"0" * 32 + b"-" + PARENT.encode() + b"-01",
        b"00-" + TRACE.encode() + b"-" + b"0" * 16 + b"-01",
        b"ff-" + TRACE.encode() + b"-" + PARENT.encode() + b"-01",
        b"00-" + TRACE.upper().encode() + b"-" + PARENT.encode() + b"-01",
        TRACEPARENT[:-1],
        TRACEPARENT + b"-extra",
        b"\xff\xfe\x00" * 20,
        b"x" * 4000,
        None,
    ],
    ids=[
        "garbage",
        "empty",
        "zero-trace",
        "zero-span",
        "version-ff",
        "upper-case",
        "short",
        "extra",
        "binary",
        "long",
        "absent",
    ],
)
def test_a_malformed_or_absent_traceparent_starts_a_new_trace(make_server, spans, traceparent):
    tracer, exporter = spans
    srv = make_server(observer=ObservedCalls(metrics=None, tracer=tracer))
    with header_client(srv.port) as client:
        if traceparent is not None:
            client._iprot.trans.set_header(b"traceparent", traceparent)
        assert client.getTaskStatus(KNOWN).id == KNOWN  # answered as ever
    span = only(exporter)
    assert span.parent is None and span.context.trace_id != int(TRACE, 16)


@pytest.mark.timeout(30)
def test_plain_framings_start_a_trace_and_outcomes_show_on_the_span(make_server, spans):
    tracer, exporter = spans
    srv = make_server(delay=0.01, observer=ObservedCalls(metrics=None, tracer=tracer))
    for framed in (False, True):
        with stock_client(srv.port, framed=framed) as client:
            client.getTaskStatus(KNOWN)
            with pytest.raises(BadTask):
                client.getTaskStatus("nope")
            with pytest.raises(Exception, match="Internal error"):
                client.queueCalcPi(13)
    finished = exporter.get_finished_spans()
    assert len(finished) == 6 and all(s.parent is None for s in finished)
    ok, idl, internal = finished[:3]
    assert ok.status.status_code == StatusCode.UNSET and "rpc.thrift.outcome" not in (ok.attributes or {})
    assert idl.status.status_code == StatusCode.UNSET and idl.attributes["rpc.thrift.outcome"] == "idl_error"
    assert internal.status.status_code == StatusCode.ERROR
    assert internal.attributes["rpc.thrift.outcome"] == "internal_error"
    # A method the IDL does not have: named "unknown", never after the client's choice.
    exporter.clear()
    with connect(srv.port) as sock:
        sock.sendall(frame(encode_call("noSuchMethod", _Empty())))
        sock.recv(65536)
    assert only(exporter).name == "unknown"


class _Empty:
    def write(self, prot: Any) -> None:
        prot.writeStructBegin("noSuchMethod_args")
        prot.writeFieldStop()
        prot.writeStructEnd()


@pytest.mark.timeout(60)
def test_the_publish_span_is_the_calls_child_and_the_message_carries_it(
    make_server, spans, tmp_path, broker_url, queue_name
):
    from opentelemetry.instrumentation.celery import celery_getter
    from opentelemetry.propagate import extract

    tracer, exporter = spans
    catalog = open_catalog(StateSettings(STATE_DIR=tmp_path / "results"), ttl=0, threads=2)
    publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=0, tracer=tracer)
    handler = RPCceleryHandler(catalog, publisher.publish_calc_pi, 10)
    srv = make_server(handler=handler, observer=ObservedCalls(metrics=None, tracer=tracer))
    try:
        with header_client(srv.port) as client:
            client._iprot.trans.set_header(b"traceparent", TRACEPARENT)
            task_id = client.queueCalcPi(4).id
    finally:
        asyncio.run_coroutine_threadsafe(publisher.close(), srv.loop).result(10)
        asyncio.run_coroutine_threadsafe(catalog.close(), srv.loop).result(10)

    call, publish = only(exporter, "queueCalcPi"), only(exporter, PUBLISH_SPAN)
    assert call.parent is not None and call.parent.span_id == int(PARENT, 16)
    assert call.attributes["pi.task_id"] == task_id  # named by the handler once it knew the id
    assert publish.kind == SpanKind.PRODUCER and publish.parent is not None
    assert publish.parent.span_id == call.context.span_id and publish.context.trace_id == int(TRACE, 16)
    assert publish.attributes["messaging.message.id"] == task_id
    assert publish.attributes["celery.task_name"] == "worker.calc_pi"

    (message,) = _get_all(broker_url, queue_name)
    assert message.headers["id"] == task_id
    assert message.headers["traceparent"] == f"00-{TRACE}-{publish.context.span_id:016x}-01"
    # What the worker's Celery instrumentation does with it: Celery copies the message's headers onto
    # task.request, which the instrumentation reads with its getter; the task's span gets this parent.
    request = type("Request", (), dict(message.headers))()
    parent = trace.get_current_span(extract(request, getter=celery_getter)).get_span_context()
    assert (parent.trace_id, parent.span_id) == (publish.context.trace_id, publish.context.span_id)


@pytest.mark.timeout(60)
def test_without_a_tracer_the_message_carries_no_trace_context(broker_url, queue_name):
    async def publish() -> None:
        publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=0)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
        finally:
            await publisher.close()

    asyncio.run(publish())
    (message,) = _get_all(broker_url, queue_name)
    assert "traceparent" not in message.headers
