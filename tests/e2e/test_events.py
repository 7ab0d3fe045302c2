"""The event streams through the real stack: GET /task/{id}/events and GET /alltasks/events.

The stack here runs its worker at the demo pace (DEMO_MIN_SECONDS), so that every task, even at a
few decimals, reports progress for a couple of seconds.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn

from app import sse
from app.config import GatewaySettings
from app.main import create_app
from app.routes import events
from testing.stack import Stack
from testing.waiting import free_port, wait_for
from tests.e2e.backends import BACKENDS, stack_on_backend

DEMO_SECONDS = 2.0
FINAL = {"SUCCESS", "FAILURE", "REVOKED"}


@pytest.fixture(scope="module", params=BACKENDS)
def demo(
    request: pytest.FixtureRequest, broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """A stack of its own whose tasks take at least DEMO_SECONDS, on each state backend in turn."""
    with stack_on_backend(
        request, broker_url, redis_url, tmp_path_factory, "events", DEMO_MIN_SECONDS=str(DEMO_SECONDS)
    ) as s:
        yield s


@dataclass
class Event:
    name: str | None
    id: str | None
    data: str
    at: float = field(default_factory=time.monotonic)
    wall: datetime = field(default_factory=lambda: datetime.now(UTC))

    @property
    def body(self) -> dict:
        return json.loads(self.data)


class EventReader:
    """Reads one event stream, event by event, the way an EventSource parses it."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.lines = response.iter_lines()
        self.retry: int | None = None
        self.comments: list[str] = []
        self.last_id: str | None = None

    def next(self) -> Event | None:
        """The next event, or None once the server has ended the stream."""
        name, data, event_id = None, [], None
        for line in self.lines:
            if not line:
                if data:
                    if event_id is not None:
                        self.last_id = event_id
                    return Event(name, event_id, "\n".join(data))
                continue
            key, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if key == "":
                self.comments.append(value)
            elif key == "event":
                name = value
            elif key == "data":
                data.append(value)
            elif key == "id":
                event_id = value
            elif key == "retry":
                self.retry = int(value)
        return None

    def until(self, check: Callable[[Event], bool], timeout: float = 15) -> Event:
        """Read events until one satisfies `check`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next()
            assert event is not None, "the stream ended first"
            if check(event):
                return event
        pytest.fail(f"no matching event within {timeout} s")


@contextmanager
def stream(url: str, headers: dict[str, str] | None = None, read_timeout: float = 10) -> Iterator[EventReader]:
    with (
        httpx.Client(timeout=httpx.Timeout(5, read=read_timeout)) as client,
        client.stream("GET", url, headers=headers) as response,
    ):
        yield EventReader(response)


def start(api: str, decimal: int) -> str:
    r = httpx.post(f"{api}/calcpi/{decimal}", timeout=10)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value)


def test_task_stream_follows_a_task_to_success_and_ends(demo: Stack) -> None:
    task_id = start(demo.api, 5)
    got: list[Event] = []
    with stream(f"{demo.api}/task/{task_id}/events") as reader:
        assert reader.response.status_code == 200
        assert reader.response.headers["content-type"].startswith("text/event-stream")
        assert reader.response.headers["cache-control"] == "no-cache"
        while (event := reader.next()) is not None:
            got.append(event)
        ended = time.monotonic()
        assert reader.retry == events.RETRY_MS
    assert {e.name for e in got} == {"task"} and all(e.id for e in got)
    bodies = [e.body for e in got]
    assert all(b["id"] == task_id for b in bodies)
    progress = [b["progress"] for b in bodies]
    assert progress == sorted(progress), "progress went back"
    running = [b for b in bodies if b["status"] == "PROGRESS"]
    assert len({b["progress"] for b in running}) >= 4, progress
    assert [b["status"] for b in bodies if b["status"] in FINAL] == ["SUCCESS"]
    last = bodies[-1]
    assert last["status"] == "SUCCESS" and last["digits"] == "3.14159" and last["progress"] == 100
    assert ended - got[-1].at < 0.5, "the stream did not end after the final event"
    # How old each state was when it reached the client (the worker and the test share a clock):
    # progress by its heartbeat, the end by its stop time. At most a poll interval plus a call.
    ages = [(e.wall - parse(e.body["heartbeat"])).total_seconds() for e in got if e.body["heartbeat"]]
    final_lag = (got[-1].wall - parse(last["stoptime"])).total_seconds()
    print(
        f"\n{len(got)} events; progress states {statistics.median(ages) * 1000:.0f} ms old (median), "
        f"{max(ages) * 1000:.0f} ms at most; SUCCESS reached the client {final_lag * 1000:.0f} ms after it "
        "was written"
    )
    assert max([*ages, final_lag]) < events.POLL_INTERVAL + 0.75


def test_reconnecting_gets_the_current_state_at_once(demo: Stack) -> None:
    task_id = start(demo.api, 4)
    url = f"{demo.api}/task/{task_id}/events"
    with stream(url) as reader:
        seen = reader.until(lambda e: e.body["status"] == "PROGRESS" and e.body["progress"] > 0)
    assert reader.last_id == seen.id
    # A reconnecting EventSource sends the id of the last event it got: it gets the state now.
    asked = time.monotonic()
    with stream(url, headers={"Last-Event-ID": seen.id or ""}) as reader:
        first = reader.next()
        assert first is not None and first.at - asked < 0.5
        assert first.body["progress"] >= seen.body["progress"]
        final = reader.until(lambda e: e.body["status"] in FINAL)
        assert reader.next() is None
    assert final.body["status"] == "SUCCESS" and final.body["digits"] == "3.1416"
    # After the final event, a reconnect with its id is told there is nothing more (204 stops an EventSource).
    r = httpx.get(url, headers={"Last-Event-ID": final.id or ""}, timeout=5)
    assert r.status_code == 204 and r.content == b""
    # Without it (a new page), the final state once more, then the end.
    with stream(url) as reader:
        again = reader.next()
        assert again is not None and again.body == final.body and again.id == final.id
        assert reader.next() is None


@pytest.mark.parametrize("task_id", ["00000000-0000-4000-8000-000000000000", "not-a-uuid", "x" * 300])
def test_unknown_or_malformed_task_is_404_json_before_any_stream(demo: Stack, task_id: str) -> None:
    r = httpx.get(f"{demo.api}/task/{task_id}/events", timeout=5)
    assert r.status_code == 404 and r.headers["content-type"] == "application/json"
    assert r.json()["detail"].startswith("no task with")


def test_cancel_ends_the_stream_with_a_revoked_event(demo: Stack) -> None:
    task_id = start(demo.api, 10)  # takes far longer than the test
    with stream(f"{demo.api}/task/{task_id}/events") as reader:
        reader.until(lambda e: e.body["status"] == "PROGRESS")
        asked = time.monotonic()
        r = httpx.delete(f"{demo.api}/task/{task_id}", timeout=10)
        assert r.status_code == 200 and r.json()["status"] == "REVOKED"
        final = reader.until(lambda e: e.body["status"] != "PROGRESS")
        assert reader.next() is None
    print(
        f"\nREVOKED event {(final.at - asked) * 1000:.0f} ms after DELETE was sent "
        f"(the DELETE itself took {r.elapsed.total_seconds() * 1000:.0f} ms)"
    )
    assert final.body["status"] == "REVOKED" and final.body["stoptime"] and final.body["digits"] is None
    assert final.at - asked < 3


def test_list_stream_sends_the_page_at_once_then_changes_and_the_host(demo: Stack) -> None:
    with stream(f"{demo.api}/alltasks/events?limit=5") as reader:
        first = reader.next()
        assert first is not None and first.name == "tasks" and first.id
        page = first.body
        assert set(page) == {"total", "offset", "limit", "status", "tasks"}
        assert page["offset"] == 0 and page["limit"] == 5 and len(page["tasks"]) <= 5
        assert page["total"] == int(httpx.get(f"{demo.api}/alltasks", timeout=5).headers["X-Total-Count"])
        task_id = start(demo.api, 3)
        started = time.monotonic()
        listed = reader.until(lambda e: e.name == "tasks" and e.body["tasks"][0]["id"] == task_id)
        print(f"\nnew task on the list stream {(listed.at - started) * 1000:.0f} ms after POST returned")
        assert listed.at - started < 1.5 and listed.body["total"] == page["total"] + 1
        host = reader.until(lambda e: e.name == "host", timeout=events.HOST_INTERVAL + 3)
        assert set(host.body) == {"hostname", "ip", "cpu", "memory", "disk"} and host.id is None
        done = reader.until(lambda e: e.name == "tasks" and e.body["tasks"][0]["status"] in FINAL)
        assert done.body["tasks"][0]["digits"] == "3.142" and done.body["tasks"][0]["progress"] == 100


# ---- a gateway in this process, to look at its streams from inside --------------------------------


@contextmanager
def gateway(demo: Stack) -> Iterator[tuple[str, object]]:
    """A gateway on a free port in a thread, talking to the demo stack's Thrift server."""
    app = create_app(GatewaySettings(TSERVER_PORT=demo.tserver_port))
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=port, log_config=None, access_log=False, ws="none", timeout_graceful_shutdown=3
        )
    )
    thread = threading.Thread(target=server.run, name="gateway", daemon=True)
    thread.start()
    wait_for(lambda: server.started, 10, "the in-process gateway to start")
    try:
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)


def test_streams_are_bounded_and_a_departed_client_frees_its_stream(
    demo: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE", 0.3)
    with gateway(demo) as (api, app):
        hub = app.state.feeds  # type: ignore[attr-defined] - Starlette's app.state is untyped
        hub.max_streams = 2
        quiet = f"{api}/alltasks/events?status=FAILURE"  # a page that does not change here
        with stream(quiet) as a, stream(quiet) as b:
            assert a.next() is not None and b.next() is not None
            assert len(hub.listeners) == 2 and len(hub.feeds) == 2  # one page feed and the host, shared
            r = httpx.get(quiet, timeout=5)
            assert r.status_code == 503 and r.headers["Retry-After"] == "5"
            assert r.json() == {"detail": "too many event streams are open (at most 2); try again shortly"}
            # A quiet stream still sends keep-alive comments.
            deadline = time.monotonic() + 3
            while "keep-alive" not in a.comments and time.monotonic() < deadline:
                a.next()
            assert "keep-alive" in a.comments
        left = time.monotonic()
        wait_for(lambda: not hub.listeners and not hub.feeds, 2, "the streams and their poll loops to stop")
        print(f"\nstreams freed {(time.monotonic() - left) * 1000:.0f} ms after their clients left")
        with stream(quiet) as c:
            assert c.next() is not None
