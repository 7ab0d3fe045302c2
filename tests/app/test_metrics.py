"""The gateway's metrics through the real app (httpx's ASGI transport) against a real Thrift server (the
runtime's, with an in-test handler): exact counts after a known set of requests, bounded labels, the
outcomes of Thrift calls, the gauges, and METRICS_ENABLED=false."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from app.config import GatewaySettings
from app.main import create_app
from app.metrics import OUTCOMES, GatewayMetrics
from app.metrics_http import HttpMetrics
from app.replicas import ThriftReplicas
from app.thrift_observed import outcome_of
from testing.waiting import free_port
from tests.tserver.runtime_harness import KNOWN, Handler, ServerThread
from tserver.runtime import ServerLimits

pytestmark = pytest.mark.timeout(60)

UNKNOWN = "00000000-0000-4000-8000-000000000000"
BROKEN = "00000000-0000-4000-8000-0000000000ff"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


class Failing(Handler):
    """BROKEN's read is a handler bug: the server answers INTERNAL_ERROR (the gateway: 502)."""

    def getTaskStatus(self, uuid):
        if uuid == BROKEN:
            raise RuntimeError("handler bug")
        return super().getTaskStatus(uuid)


@pytest.fixture(scope="module")
def server() -> Iterator[ServerThread]:
    srv = ServerThread(ServerLimits(workers=2), delay=0.3, handler=Failing(delay=0.3)).start()
    yield srv
    srv.close()


@asynccontextmanager
async def gateway(port: int, **settings: object) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(GatewaySettings(TSERVER_PORT=port, **settings))  # type: ignore[arg-type]  # test overrides
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as client,
    ):
        client.app = app  # type: ignore[attr-defined]  # the tests look inside it
        yield client


async def scrape(client: httpx.AsyncClient) -> Samples:
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(r.text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: Samples, name: str) -> set[tuple[tuple[str, str], ...]]:
    return {labels for (n, labels) in samples if n == name}


def test_exact_counts_after_a_known_set_of_requests(server: ServerThread) -> None:
    async def scenario() -> Samples:
        async with gateway(server.port) as c:
            for _ in range(3):  # one Thrift call; the ended task is then served from the gateway's cache
                assert (await c.get(f"/task/{KNOWN}")).status_code == 200
            for _ in range(2):  # unknown: the server's BadTask, a declared exception, each time
                assert (await c.get(f"/task/{UNKNOWN}")).status_code == 404
            assert (await c.get(f"/task/{BROKEN}")).status_code == 502
            assert (await c.get("/task/not-a-uuid")).status_code == 404  # no Thrift hop
            for _ in range(4):
                assert (await c.get("/livez")).status_code == 200
            assert (await c.post("/livez")).status_code == 405
            assert (await c.get("/no/such/page")).status_code == 404
            assert (await c.get("/calcpi/11")).status_code == 422  # above MAX_DECIMAL: no hop
            assert (await c.post("/calcpi/3")).status_code == 202
            return await scrape(c)

    s = asyncio.run(scenario())
    requests = {labels: v for (name, labels), v in s.items() if name == "http_requests_total"}
    assert requests == {
        (("handler", "/task/{id}"), ("method", "GET"), ("status", "200")): 3,
        (("handler", "/task/{id}"), ("method", "GET"), ("status", "404")): 3,
        (("handler", "/task/{id}"), ("method", "GET"), ("status", "502")): 1,
        (("handler", "/livez"), ("method", "GET"), ("status", "200")): 4,
        (("handler", "/livez"), ("method", "POST"), ("status", "405")): 1,
        (("handler", "none"), ("method", "GET"), ("status", "404")): 1,
        (("handler", "/calcpi/{decimal}"), ("method", "GET"), ("status", "422")): 1,
        (("handler", "/calcpi/{decimal}"), ("method", "POST"), ("status", "202")): 1,
    }  # the scrape itself is counted once it has been answered: not in its own page
    assert value(s, "http_request_duration_seconds_count", handler="/task/{id}", method="GET") == 7
    assert value(s, "http_request_duration_seconds_count", handler="/livez", method="GET") == 4
    # Every observation is in the +Inf bucket, and the one of a start waited for the handler's 0.3 s.
    assert value(s, "http_request_duration_seconds_bucket", handler="/livez", method="GET", le="+Inf") == 4
    assert value(s, "http_request_duration_seconds_sum", handler="/calcpi/{decimal}", method="POST") >= 0.3

    calls = {labels: v for (name, labels), v in s.items() if name == "thrift_client_calls_total"}
    assert calls == {
        (("method", "getTaskStatus"), ("outcome", "ok")): 1,
        (("method", "getTaskStatus"), ("outcome", "idl_error")): 2,
        (("method", "getTaskStatus"), ("outcome", "failed")): 1,
        (("method", "queueCalcPi"), ("outcome", "ok")): 1,
    }
    assert value(s, "thrift_client_call_duration_seconds_count", method="getTaskStatus") == 4
    assert value(s, "thrift_client_call_duration_seconds_bucket", method="queueCalcPi", le="0.25") == 0
    assert value(s, "thrift_client_call_duration_seconds_bucket", method="queueCalcPi", le="0.5") == 1
    address = f"127.0.0.1:{server.port}"
    assert value(s, "thrift_client_connections_in_use", server=address) == 0
    assert value(s, "thrift_client_connections_idle", server=address) == 1  # one connection served them all
    assert value(s, "http_event_streams_open") == 0
    assert value(s, "process_resident_memory_bytes") > 0


def test_labels_stay_bounded(server: ServerThread) -> None:
    sent: list[str] = []

    async def scenario() -> tuple[Samples, str]:
        async with gateway(server.port) as c:
            for _ in range(25):
                ids = [str(uuid.uuid4()), uuid.uuid4().hex, "X" + uuid.uuid4().hex[:12].upper()]
                sent.extend(ids)
                await c.get(f"/task/{ids[0]}")  # unknown ids: 404 from the server
                await c.get(f"/{ids[1]}/page")  # unknown paths
                await c.get(f"/task/{ids[1]}")  # malformed ids
                await c.request(ids[2], "/livez")  # made-up methods
            r = await c.get("/metrics")
            return await scrape(c), r.text

    s, text = asyncio.run(scenario())
    assert series(s, "http_requests_total") == {
        (("handler", "/task/{id}"), ("method", "GET"), ("status", "404")),
        (("handler", "none"), ("method", "GET"), ("status", "404")),
        (("handler", "/livez"), ("method", "other"), ("status", "405")),
        (("handler", "/metrics"), ("method", "GET"), ("status", "200")),
    }
    assert value(s, "http_requests_total", handler="/task/{id}", method="GET", status="404") == 50
    assert series(s, "thrift_client_calls_total") == {(("method", "getTaskStatus"), ("outcome", "idl_error"))}
    assert not [i for i in sent if i in text]  # no id, path or method of a request anywhere


def test_metrics_disabled_means_no_route_and_no_counting(server: ServerThread) -> None:
    async def scenario() -> None:
        async with gateway(server.port, METRICS_ENABLED=False) as c:
            assert (await c.get(f"/task/{KNOWN}")).status_code == 200
            assert (await c.get("/metrics")).status_code == 404
            app = c.app  # type: ignore[attr-defined] - httpx's ASGI client keeps the app it was given; not in its type
            assert not any(m.cls is HttpMetrics for m in app.user_middleware)
            assert type(app.state.thrift) is ThriftReplicas  # not wrapped: no per-call work

    asyncio.run(scenario())


def test_outcomes_of_calls_that_fail(server: ServerThread) -> None:
    async def unreachable() -> Samples:
        async with gateway(free_port(), THRIFT_CONNECT_TIMEOUT=0.5) as c:
            assert (await c.get(f"/task/{KNOWN}")).status_code == 503
            return await scrape(c)

    async def silent(port: int) -> Samples:
        async with gateway(port, THRIFT_TIMEOUT=0.5) as c:
            assert (await c.get(f"/task/{KNOWN}")).status_code == 503
            return await scrape(c)

    async def dropping() -> Samples:
        listener = socket.create_server(("127.0.0.1", 0))
        listener.setblocking(False)
        loop = asyncio.get_running_loop()

        async def drop() -> None:  # takes the request, closes the connection
            while True:
                conn, _ = await loop.sock_accept(listener)
                await loop.sock_recv(conn, 65536)
                conn.close()

        task = asyncio.create_task(drop())
        try:
            async with gateway(listener.getsockname()[1]) as c:
                assert (await c.get(f"/task/{KNOWN}")).status_code == 503
                return await scrape(c)
        finally:
            task.cancel()
            listener.close()

    with socket.create_server(("127.0.0.1", 0)) as quiet:  # accepts, never answers
        timed_out = asyncio.run(silent(quiet.getsockname()[1]))
    for samples, outcome in (
        (asyncio.run(unreachable()), "unavailable"),
        (timed_out, "timeout"),
        (asyncio.run(dropping()), "dropped"),
    ):
        assert series(samples, "thrift_client_calls_total") == {(("method", "getTaskStatus"), ("outcome", outcome))}
        assert value(samples, "thrift_client_calls_total", method="getTaskStatus", outcome=outcome) == 1


def test_every_outcome_is_one_of_the_fixed_list() -> None:
    from app.errors import ComputeDropped, ComputeFailed, ComputeTimeout, ComputeUnreachable
    from RPC.ttypes import BadTask

    # Pairs, not a dict: the IDL's exceptions are mutable, so unhashable (rpcinterface.thrift says why).
    cases = [
        (BadTask(message="x"), "idl_error"),
        (ComputeTimeout("x"), "timeout"),
        (ComputeUnreachable("x"), "unavailable"),
        (ComputeDropped("x"), "dropped"),
        (ComputeFailed("x"), "failed"),
        (asyncio.CancelledError(), "cancelled"),
        (RuntimeError("a bug"), "failed"),
    ]
    for exc, outcome in cases:
        assert outcome_of(exc) == outcome
    assert {outcome for _, outcome in cases} | {"ok"} == set(OUTCOMES)


def test_gauges_count_open_streams_and_connections_in_use(server: ServerThread) -> None:
    async def scenario() -> tuple[Samples, Samples]:
        async with gateway(server.port) as c:
            app = c.app  # type: ignore[attr-defined] - httpx's ASGI client keeps the app it was given; not in its type
            listener = app.state.feeds.open()  # what an open event stream holds
            host = asyncio.create_task(c.get("/"))  # getHostStatus: the handler takes 0.3 s
            while app.state.replicas.pools[0].in_use == 0:
                await asyncio.sleep(0.01)
            during = await scrape(c)
            assert (await host).status_code == 200
            listener.close()
            return during, await scrape(c)

    during, after = asyncio.run(scenario())
    address = f"127.0.0.1:{server.port}"
    assert value(during, "http_event_streams_open") == 1 and value(after, "http_event_streams_open") == 0
    assert value(during, "thrift_client_connections_in_use", server=address) == 1
    assert value(after, "thrift_client_connections_in_use", server=address) == 0
    assert value(after, "thrift_client_connections_idle", server=address) == 1


def test_each_app_has_a_registry_of_its_own() -> None:
    first, second = GatewayMetrics(), GatewayMetrics()
    first.observe_request("/livez", "GET", 200, 0.001)
    assert b'http_requests_total{handler="/livez",method="GET",status="200"} 1.0' in first.render()
    assert b"http_requests_total{" not in second.render()
