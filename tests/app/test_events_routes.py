"""The event stream routes without a Thrift server: errors before any stream, shutdown, the OpenAPI
description; and the dashboard's and the IDL's files."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Coroutine

import httpx
import pytest
import uvicorn
from sse_starlette.sse import AppStatus

from app.config import GatewaySettings
from app.feeds import MAX_STREAMS, FeedHub
from app.main import create_app
from RPC.ttypes import calcResult
from testing.waiting import free_port

pytestmark = pytest.mark.timeout(30)


def run(coro: Coroutine[object, object, None]) -> None:
    asyncio.run(coro)


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
