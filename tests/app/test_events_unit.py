"""The event streams' parts without a real stack: the SSE wire format, the shared poll loops, the
response that stops when its client leaves, and the routes' answers before any stream starts."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Coroutine

import httpx
import pytest
import uvicorn
from sse_starlette.sse import AppStatus

from app import sse
from app.config import GatewaySettings
from app.feeds import MAX_STREAMS, FeedHub
from app.main import create_app
from app.snapshots import Snapshot
from RPC.ttypes import calcResult
from testing.waiting import free_port

pytestmark = pytest.mark.timeout(30)


def run(coro: Coroutine[object, object, None]) -> None:
    asyncio.run(coro)


# ---- the wire format ------------------------------------------------------------------------------


def test_event_has_name_id_and_one_data_line_per_line() -> None:
    assert sse.event('{"a":1}', name="task", event_id="abc") == b'event: task\nid: abc\ndata: {"a":1}\n\n'
    assert sse.event("one\ntwo") == b"data: one\ndata: two\n\n"
    assert sse.event("") == b"data: \n\n"
    assert sse.retry(1500) == b"retry: 1500\n\n"
    assert sse.keepalive().encode() == b": keep-alive\n\n"


@pytest.mark.parametrize("field", ["name", "event_id"])
def test_event_fields_cannot_smuggle_lines(field: str) -> None:
    with pytest.raises(ValueError, match="cannot span lines"):
        sse.event("x", **{field: "task\ndata: forged"})


def test_snapshot_ids_are_digests_of_the_data() -> None:
    a, b = Snapshot.state("task", '{"p":1}'), Snapshot.state("task", '{"p":1}')
    assert a.id == b.id and len(a.id or "") == 16
    assert Snapshot.state("task", '{"p":2}').id != a.id
    problem = Snapshot.problem("unavailable", "down")
    assert problem.id is None and problem.detail == "down"


# ---- shared poll loops ----------------------------------------------------------------------------


class Counter:
    """A fetch function that counts its calls and returns what `values` says next (the last one repeats)."""

    def __init__(self, *values: Snapshot) -> None:
        self.values = list(values)
        self.calls = 0

    async def __call__(self) -> Snapshot:
        self.calls += 1
        return self.values[min(self.calls, len(self.values)) - 1]


def test_two_listeners_of_one_key_share_one_poll_loop_that_stops_when_they_leave() -> None:
    async def check() -> None:
        hub = FeedHub(max_streams=10)
        fetch = Counter(Snapshot.state("tasks", "[]"))
        first, second = hub.open(), hub.open()
        assert first is not None and second is not None
        feed = first.watch("page", fetch, 0.02)
        assert second.watch("page", Counter(), 0.02) is feed  # the second fetch is never used
        await feed.first()
        await asyncio.sleep(0.2)
        assert 5 <= fetch.calls <= 12, fetch.calls  # one loop at 50 Hz, not two
        first.close()
        second.close()
        await asyncio.sleep(0.1)
        calls = fetch.calls
        await asyncio.sleep(0.1)
        assert fetch.calls == calls, "the loop kept polling with nobody listening"
        assert hub.feeds == {} and hub.listeners == set()

    run(check())


def test_listeners_are_woken_only_by_changes() -> None:
    async def check() -> None:
        hub = FeedHub(max_streams=10)
        same = Snapshot.state("task", '{"progress":1}')
        fetch = Counter(same, same, same, Snapshot.state("task", '{"progress":2}'))
        listener = hub.open()
        assert listener is not None
        feed = listener.watch("t", fetch, 0.01)
        await feed.first()
        assert feed.version == 1
        listener.wake.clear()
        assert await listener.wait(1.0)  # the fourth poll changes the state
        assert fetch.calls >= 4 and feed.version == 2
        listener.wake.clear()
        assert not await listener.wait(0.1)  # nothing changes after that
        listener.close()

    run(check())


def test_a_final_snapshot_stops_polling_and_a_late_listener_still_gets_it() -> None:
    async def check() -> None:
        hub = FeedHub(max_streams=10)
        fetch = Counter(
            Snapshot.state("task", '{"status":"PROGRESS"}'), Snapshot.state("task", '{"status":"SUCCESS"}', final=True)
        )
        listener = hub.open()
        assert listener is not None
        feed = listener.watch("t", fetch, 0.01)
        await asyncio.sleep(0.1)
        assert fetch.calls == 2 and not feed.polling and feed.snapshot is not None and feed.snapshot.final
        late = hub.open()
        assert late is not None
        assert (await late.watch("t", fetch, 0.01).first()).final
        listener.close()
        late.close()
        await asyncio.sleep(0.05)
        assert hub.feeds == {}

    run(check())


def test_a_fetch_that_raises_becomes_unavailable_and_the_loop_goes_on() -> None:
    async def check() -> None:
        calls = 0

        async def flaky() -> Snapshot:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise RuntimeError("boom")
            return Snapshot.state("host", "{}")

        hub = FeedHub(max_streams=1)
        listener = hub.open()
        assert listener is not None
        feed = listener.watch("host", flaky, 0.01)
        assert (await feed.first()).event == "unavailable"
        await asyncio.sleep(0.05)
        assert feed.snapshot is not None and feed.snapshot.event == "host"
        listener.close()

    run(check())


def test_the_hub_bounds_open_streams_and_refuses_all_once_closing() -> None:
    async def check() -> None:
        hub = FeedHub(max_streams=2)
        a, b = hub.open(), hub.open()
        assert a is not None and b is not None and hub.open() is None
        a.close()
        a.close()  # idempotent: frees one slot, not two
        c = hub.open()
        assert c is not None and hub.open() is None
        hub.close()
        assert b.wake.is_set() and c.wake.is_set()
        b.close()
        assert hub.open() is None

    run(check())


# ---- the response ---------------------------------------------------------------------------------


def test_event_stream_stops_at_once_when_the_client_leaves() -> None:
    async def check() -> None:
        closed = asyncio.Event()
        sent: list[dict] = []

        async def forever() -> AsyncIterator[bytes]:
            yield b": hello\n\n"
            await asyncio.sleep(3600)
            yield b"never"

        async def receive() -> dict:
            if not sent:
                await asyncio.sleep(0.01)
                return {"type": "http.request", "body": b"", "more_body": False}
            await asyncio.sleep(0.1)
            return {"type": "http.disconnect"}

        async def send(message: dict) -> None:
            sent.append(message)

        response = sse.EventStream(forever(), on_close=closed.set)
        started = time.monotonic()
        await asyncio.wait_for(response({"type": "http", "method": "GET"}, receive, send), 2)
        assert time.monotonic() - started < 1.0 and closed.is_set()
        assert sent[0]["type"] == "http.response.start" and sent[1]["body"] == b": hello\n\n"
        headers = dict(sent[0]["headers"])
        assert headers[b"content-type"].startswith(b"text/event-stream")
        assert headers[b"cache-control"] == b"no-cache"

    run(check())


# ---- the routes, before any stream ----------------------------------------------------------------


@pytest.mark.parametrize("task_id", ["abc", "00000000-0000-4000-8000-00000000000G", "x" * 3000])
def test_malformed_task_id_is_404_json_without_a_thrift_hop(task_id: str) -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            r = await c.get(f"/task/{task_id}/events")
            assert r.status_code == 404 and r.headers["content-type"] == "application/json"
            assert r.json()["detail"].startswith("no task with this id")
            assert app.state.feeds.listeners == set()

    run(check())


def test_streams_answer_503_quickly_when_the_thrift_server_is_unreachable() -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port(), THRIFT_CONNECT_TIMEOUT=0.5))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            for path in ("/task/00000000-0000-4000-8000-000000000000/events", "/alltasks/events"):
                started = time.monotonic()
                r = await c.get(path)
                assert r.status_code == 503 and "unreachable" in r.json()["detail"], r.text
                assert r.headers["Retry-After"] == "5"
                assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.05)
            assert app.state.feeds.listeners == set() and app.state.feeds.feeds == {}

    run(check())


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"status": "DONE"}])
def test_bad_list_stream_parameters_are_422(params: dict) -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            r = await c.get("/alltasks/events", params=params)
            assert r.status_code == 422 and isinstance(r.json()["detail"], str)

    run(check())


def test_too_many_streams_is_503_before_any_thrift_hop() -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with app.router.lifespan_context(app):
            hub: FeedHub = app.state.feeds
            hub.max_streams = 0
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
                r = await c.get("/alltasks/events")
                assert r.status_code == 503 and r.headers["Retry-After"] == "5"
                assert r.json() == {"detail": "too many event streams are open (at most 0); try again shortly"}

    run(check())


class RunningTask:
    """Stands in for the Thrift pool: every task it is asked about is running, forever."""

    async def call(self, method: str, task_id: str, **_: object) -> calcResult:
        assert method == "getTaskStatus"
        return calcResult(
            id=task_id, status="PROGRESS", decimal=5, progress=10.0, pushqtime="2026-11-28T03:00:00+00:00"
        )

    async def close(self) -> None:
        pass


def test_an_exit_signal_ends_the_streams_and_still_reaches_the_servers_handler() -> None:
    received: list[int] = []

    def handler(signum: int, frame: object) -> None:
        received.append(signum)

    before = signal.signal(signal.SIGTERM, handler)

    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host="127.0.0.1",
                port=port,
                log_config=None,
                access_log=False,
                ws="none",
                timeout_graceful_shutdown=5,
            )
        )
        serving = asyncio.create_task(server.serve())  # in the main thread: uvicorn takes over SIGTERM
        while not server.started:
            await asyncio.sleep(0.01)
        app.state.thrift = RunningTask()
        hub: FeedHub = app.state.feeds
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client,
            client.stream("GET", "/task/00000000-0000-4000-8000-000000000000/events") as response,
        ):
            lines = response.aiter_lines()
            async for line in lines:
                if line.startswith("data:"):
                    break
            signal.raise_signal(signal.SIGTERM)
            asked = time.monotonic()
            # The stream ends, and as a complete response: one cut short raises here.
            async for _ in lines:
                pass
            took = time.monotonic() - asked
        await asyncio.wait_for(serving, 10)
        print(f"\nSIGTERM to the end of an open stream: {took * 1000:.0f} ms")
        assert hub.closing and took < 1.5

    try:
        run(check())
        # uvicorn passed the signal on to the handler it had replaced, and put that handler back.
        assert received == [signal.SIGTERM]
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        # sse-starlette keeps "the server is exiting" in a process-wide flag that nothing resets:
        # left set, it would end every later stream of this test process at once.
        AppStatus.should_exit = False
        signal.signal(signal.SIGTERM, before)


def test_stream_routes_are_documented_as_event_streams() -> None:
    spec = create_app(GatewaySettings()).openapi()
    for path in ("/task/{id}/events", "/alltasks/events"):
        responses = spec["paths"][path]["get"]["responses"]
        assert "text/event-stream" in responses["200"]["content"]
        assert responses["503"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "/ui" not in spec["paths"] and "/idl" not in spec["paths"]
    assert MAX_STREAMS >= 100


def test_each_streams_events_are_described_by_name() -> None:
    spec = create_app(GatewaySettings()).openapi()
    for path, names in (
        ("/task/{id}/events", {"task", "unavailable", "gone"}),
        ("/alltasks/events", {"tasks", "host", "unavailable", "gone"}),
    ):
        content = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert set(content) == {"text/event-stream"}
        items = content["text/event-stream"]["itemSchema"]
        assert set(items["discriminator"]["mapping"]) == names and len(items["oneOf"]) == len(
            set(items["discriminator"]["mapping"].values())
        )
        for ref in items["oneOf"]:
            event = spec["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
            assert event["properties"]["data"]["contentMediaType"] == "application/json"
            assert event["properties"]["data"]["contentSchema"]["$ref"].startswith("#/components/schemas/")


# ---- the dashboard's and the IDL's files ----------------------------------------------------------


def test_dashboard_page_and_files_are_served_with_a_strict_policy() -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port(), MAX_DECIMAL=7))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            r = await c.get("/ui")
            assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
            assert "default-src 'self'" in r.headers["content-security-policy"]
            assert 'max="7"' in r.text and "{{" not in r.text
            assert "http://" not in r.text.replace("http://www.w3.org/2000/svg", "")
            for name, kind in (("app.js", "javascript"), ("app.css", "text/css")):
                f = await c.get(f"/ui/static/{name}")
                assert f.status_code == 200 and kind in f.headers["content-type"]
            assert (await c.get("/ui/", follow_redirects=False)).headers["location"] == "/ui"
            r = await c.get("/idl", follow_redirects=False)
            assert r.status_code == 307 and r.headers["location"] == "/idl/rpcinterface.html"
            for bad in (
                "/ui/static/..%2F..%2Fpyproject.toml",
                "/ui/static/.hidden.js",
                "/ui/static/main.py",
                "/idl/..%2Fflow.dot",
                "/idl/nope.html",
            ):
                assert (await c.get(bad)).status_code == 404, bad

    run(check())


def test_an_installation_without_the_files_answers_404_not_500(monkeypatch: pytest.MonkeyPatch) -> None:
    from app.routes import ui

    monkeypatch.setattr(ui, "STATIC_DIR", ui.STATIC_DIR / "missing")
    monkeypatch.setattr(ui, "IDL_DIR", ui.IDL_DIR / "missing")
    ui._page_template.cache_clear()

    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            for path in ("/ui", "/ui/static/app.js", "/idl/rpcinterface.html"):
                r = await c.get(path)
                assert r.status_code == 404 and r.json()["detail"], path
            assert (await c.get("/livez")).status_code == 200

    try:
        run(check())
    finally:
        ui._page_template.cache_clear()
