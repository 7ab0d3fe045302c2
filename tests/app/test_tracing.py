"""Tracing through the real app (httpx's ASGI transport) with an in-memory span exporter, against a THeader
Thrift server started here (tests/app/theader_server.py): the server span, its child client span per
Thrift call, the trace context that arrives in the THeader request, and incoming traceparent headers,
good or malformed. With tracing off the client speaks plain framed binary."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from thrift.transport.THeaderTransport import THeaderClientType

from app import tracing
from app.config import GatewaySettings, load_settings
from app.main import create_app
from app.metrics import GatewayMetrics
from app.replicas import ThriftReplicas
from app.thrift_observed import ObservedThrift
from RPC import RPCcelery
from tests.app.theader_server import ENDED, RUNNING, THeaderServer
from tests.tserver.runtime_harness import KNOWN, ServerThread
from tserver.runtime import ServerLimits, ThriftServer

pytestmark = pytest.mark.timeout(60)

UNKNOWN = "00000000-0000-4000-8000-000000000000"


@pytest.fixture
def server() -> Iterator[THeaderServer]:
    srv = THeaderServer().start()
    yield srv
    srv.close()


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@asynccontextmanager
async def gateway(port: int, exporter: InMemorySpanExporter | None) -> AsyncIterator[httpx.AsyncClient]:
    provider = None
    if exporter is not None:
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    app = create_app(GatewaySettings(TSERVER_PORT=port), tracer_provider=provider)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        yield client


def one(spans: InMemorySpanExporter, kind: SpanKind) -> ReadableSpan:
    found = [s for s in spans.get_finished_spans() if s.kind == kind]
    assert len(found) == 1, found
    return found[0]


def test_a_server_span_and_a_child_client_span_whose_context_the_theader_request_carried(
    server: THeaderServer, spans: InMemorySpanExporter
) -> None:
    async def scenario() -> httpx.Response:
        async with gateway(server.port, spans) as c:
            return await c.get(f"/task/{ENDED}")

    r = asyncio.run(scenario())
    assert r.status_code == 200 and r.json()["id"] == ENDED and r.json()["digits"] == "3.14"  # the THeader reply read
    http, rpc = one(spans, SpanKind.SERVER), one(spans, SpanKind.CLIENT)
    assert http.name == "GET /task/{id}" and http.attributes is not None
    assert http.attributes["http.route"] == "/task/{id}" and http.attributes["http.response.status_code"] == 200
    assert rpc.name == "getTaskStatus" and rpc.attributes is not None
    assert rpc.parent is not None and rpc.parent.span_id == http.context.span_id
    assert rpc.context.trace_id == http.context.trace_id
    keys = ("rpc.system", "rpc.service", "rpc.method", "net.peer.name", "net.peer.port")
    assert {k: rpc.attributes[k] for k in keys} == {
        "rpc.system": "apache_thrift",
        "rpc.service": "RPCcelery",
        "rpc.method": "getTaskStatus",
        "net.peer.name": "127.0.0.1",
        "net.peer.port": server.port,
    }
    # What reached the Thrift server: a THeader request whose traceparent is the client span's context.
    assert server.client_types == [THeaderClientType.HEADERS]
    traceparent = server.headers[0][b"traceparent"].decode()
    version, trace_id, span_id, flags = traceparent.split("-")
    assert (version, int(trace_id, 16), int(span_id, 16)) == ("00", rpc.context.trace_id, rpc.context.span_id)
    assert int(flags, 16) & 1  # sampled


def test_every_route_that_calls_thrift_gets_its_client_span(server: THeaderServer, spans: InMemorySpanExporter) -> None:
    async def scenario() -> list[int]:
        async with gateway(server.port, spans) as c:
            return [
                (await c.post("/calcpi/3")).status_code,
                (await c.delete(f"/task/{RUNNING}")).status_code,
                (await c.get(f"/task/{UNKNOWN}")).status_code,
            ]

    assert asyncio.run(scenario()) == [202, 200, 404]
    finished = spans.get_finished_spans()
    servers = {s.context.span_id: s for s in finished if s.kind == SpanKind.SERVER}
    clients = [s for s in finished if s.kind == SpanKind.CLIENT]
    assert [(c.name, servers[c.parent.span_id].name) for c in clients if c.parent is not None] == [
        ("queueCalcPi", "POST /calcpi/{decimal}"),
        ("cancelTask", "DELETE /task/{id}"),
        ("getTaskStatus", "GET /task/{id}"),
    ]
    # A declared exception (unknown task) is an answer, not an error of the call; its kind is named.
    unknown = clients[2]
    assert unknown.status.status_code == StatusCode.UNSET and unknown.attributes is not None
    assert unknown.attributes["error.type"] == "BadTask"
    sent = [h[b"traceparent"].decode().split("-")[2] for h in server.headers]
    assert sent == [format(c.context.span_id, "016x") for c in clients]


def test_an_incoming_traceparent_is_continued(server: THeaderServer, spans: InMemorySpanExporter) -> None:
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

    async def scenario() -> int:
        async with gateway(server.port, spans) as c:
            return (await c.get(f"/task/{ENDED}", headers={"traceparent": parent})).status_code

    assert asyncio.run(scenario()) == 200
    http = one(spans, SpanKind.SERVER)
    assert format(http.context.trace_id, "032x") == "0af7651916cd43dd8448eb211c80319c"
    assert http.parent is not None and format(http.parent.span_id, "016x") == "b7ad6b7169203331"
    assert server.headers[0][b"traceparent"].decode().startswith("00-0af7651916cd43dd8448eb211c80319c-")


@pytest.mark.parametrize(
    "traceparent",
    [
        "garbage",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331",  # no flags
        "00-00000000000000000000000000000000-b7ad6b7169203331-01",  # all-zero trace id
        "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",  # all-zero span id
        "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # forbidden version
        "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",  # upper case
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-" + "x" * 5000,
        "",
    ],
)
def test_a_malformed_traceparent_starts_a_new_trace(
    traceparent: str, server: THeaderServer, spans: InMemorySpanExporter
) -> None:
    async def scenario() -> httpx.Response:
        async with gateway(server.port, spans) as c:
            return await c.get(f"/task/{ENDED}", headers={"traceparent": traceparent, "tracestate": "=,=;;"})

    r = asyncio.run(scenario())
    assert r.status_code == 200 and r.json()["id"] == ENDED
    http, rpc = one(spans, SpanKind.SERVER), one(spans, SpanKind.CLIENT)
    assert http.parent is None and http.context.trace_id != 0x0AF7651916CD43DD8448EB211C80319C
    assert rpc.context.trace_id == http.context.trace_id
    assert server.headers[0][b"traceparent"].decode().split("-")[1] == format(http.context.trace_id, "032x")


def test_tracing_off_speaks_plain_framed_binary(server: THeaderServer) -> None:
    async def scenario() -> int:
        async with gateway(server.port, None) as c:
            return (
                await c.get(f"/task/{ENDED}", headers={"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
            ).status_code

    assert asyncio.run(scenario()) == 200
    assert server.client_types == [THeaderClientType.FRAMED_BINARY]


def test_suppressed_calls_are_counted_but_not_traced(server: THeaderServer, spans: InMemorySpanExporter) -> None:
    """The event streams' poll loops run in tracing.untraced_context: no span, still THeader, still counted."""
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = GatewayMetrics()

    async def scenario() -> str:
        replicas = ThriftReplicas([("127.0.0.1", server.port)], size=2, timeout=3, connect_timeout=1, header=True)
        thrift = ObservedThrift(replicas, metrics=metrics, tracer=tracing.client_tracer(provider))
        try:
            task = asyncio.create_task(thrift.call("getTaskStatus", ENDED), context=tracing.untraced_context())
            return str((await task).status)
        finally:
            await replicas.close()

    assert asyncio.run(scenario()) == "SUCCESS"
    assert spans.get_finished_spans() == ()
    assert server.client_types == [THeaderClientType.HEADERS] and server.headers == [{}]
    assert b'thrift_client_calls_total{method="getTaskStatus",outcome="ok"} 1.0' in metrics.render()


def test_exporter_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert GatewaySettings().trace_exporters == []
    assert GatewaySettings(OTEL_TRACES_EXPORTER="none").trace_exporters == []
    assert GatewaySettings(OTEL_TRACES_EXPORTER="otlp, Console").trace_exporters == ["otlp", "console"]
    monkeypatch.setenv("OTEL_TRACES_EXPORTER", "jaeger")
    with pytest.raises(SystemExit, match=r"OTEL_TRACES_EXPORTER='jaeger'.*'jaeger' is not one of otlp, console, none"):
        load_settings()
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    provider = tracing.make_provider(["console", "otlp"])
    try:
        assert provider.resource.attributes["service.name"] == "gateway"
    finally:
        provider.shutdown()
    monkeypatch.setenv("OTEL_SERVICE_NAME", "edge")
    provider = tracing.make_provider([])
    assert provider.resource.attributes["service.name"] == "edge"
    provider.shutdown()


class Recording:
    """A CallObserver of the Thrift server's runtime that keeps each call's method and info headers."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[bytes, bytes]]] = []

    def begin(self, method: str, headers: Mapping[bytes, bytes]) -> object:
        self.calls.append((method, dict(headers)))
        return None

    def end(self, token: object, outcome: str, error: BaseException | None = None) -> None:
        pass

    def rejected(self) -> None:
        pass


def test_the_real_thrift_server_reads_the_client_span_context(spans: InMemorySpanExporter) -> None:
    """The same against tserver's runtime (its THeader support): the context arrives, the replies are read."""
    recording = Recording()
    srv = ServerThread(ServerLimits(workers=2), delay=0.0)
    srv.server = ThriftServer(RPCcelery.Processor(srv.handler), "127.0.0.1", 0, srv.limits, observer=recording)
    srv.start()
    try:

        async def scenario() -> list[int]:
            async with gateway(srv.port, spans) as c:
                return [(await c.get(f"/task/{KNOWN}")).status_code, (await c.get(f"/task/{UNKNOWN}")).status_code]

        assert asyncio.run(scenario()) == [200, 404]
    finally:
        srv.close()
    clients = [s for s in spans.get_finished_spans() if s.kind == SpanKind.CLIENT]
    assert [method for method, _ in recording.calls] == ["getTaskStatus", "getTaskStatus"]
    assert [h[b"traceparent"].decode().split("-")[1:3] for _, h in recording.calls] == [
        [format(c.context.trace_id, "032x"), format(c.context.span_id, "016x")] for c in clients
    ]
