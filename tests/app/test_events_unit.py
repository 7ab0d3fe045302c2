"""Server-sent events without a Thrift server: the wire format, the shared poll loops, the response."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Coroutine

import pytest

from app import sse
from app.feeds import FeedHub
from app.snapshots import Snapshot

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
