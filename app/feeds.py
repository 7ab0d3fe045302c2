"""Shared poll loops behind the event streams: one loop per watched thing, however many clients watch it.

A Feed calls its fetch function every `interval` seconds while at least one Listener watches it,
keeps the latest Snapshot, and wakes its listeners only when the snapshot changed. A hundred
browsers watching the first page of the task list cost one Thrift call per interval, not a
hundred. A feed whose snapshot is final (a task that ended) stops polling; a feed nobody watches
stops at its next tick and leaves the hub.

    FeedHub      owns the feeds (by key) and counts the open streams (bounded); closing it ends them
    ├── Feed     one poll loop and its latest Snapshot
    └── Listener one open stream: the feeds it watches, the event that wakes it, and the changes
                 it has yet to send
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Hashable

import anyio

from app.snapshots import Snapshot
from app.tracing import untraced_context

log = logging.getLogger(__name__)

#: Event streams open at once; one more is refused (503).
MAX_STREAMS = 200


Fetch = Callable[[], Awaitable[Snapshot]]


class Feed:
    """One poll loop: fetches while anyone listens, publishes a Snapshot when it differs from the last."""

    def __init__(self, key: Hashable, fetch: Fetch, interval: float, on_idle: Callable[[Feed], None]) -> None:
        self.key = key
        self.interval = interval
        self.snapshot: Snapshot | None = None
        #: Counts the changes published; a listener compares it with the version it last sent.
        self.version = 0
        self._fetch = fetch
        self._on_idle = on_idle
        self._wakes: set[asyncio.Event] = set()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sleeping = False

    @property
    def polling(self) -> bool:
        return self._task is not None and not self._task.done()

    def subscribe(self, wake: asyncio.Event) -> None:
        """Set `wake` whenever the snapshot changes; starts the loop if it is not running."""
        self._wakes.add(wake)
        if not self.polling:
            # Untraced: the loop outlives the request that started it (app/tracing.py says why).
            self._task = asyncio.create_task(self._run(), name=f"feed {self.key}", context=untraced_context())

    def unsubscribe(self, wake: asyncio.Event) -> None:
        """Stop waking `wake`; once nobody listens the loop stops (at once, unless a call is in flight)."""
        self._wakes.discard(wake)
        if self._wakes:
            return
        if not self.polling:
            self._on_idle(self)
        elif self._sleeping and self._task is not None:
            # Cancelling between polls is free; a call in flight is left to finish, because a
            # cancelled Thrift call costs its pooled connection.
            self._task.cancel()

    async def first(self) -> Snapshot:
        """The latest snapshot, after waiting for the first poll if there was none yet."""
        await self._ready.wait()
        assert self.snapshot is not None
        return self.snapshot

    def stop(self) -> None:
        """Cancel the loop (the hub is closing); a stream still waiting for a first poll gets a problem."""
        if self._task is not None:
            self._task.cancel()
        if self.snapshot is None:
            self._publish(Snapshot.problem("unavailable", "the gateway is shutting down"))

    async def _run(self) -> None:
        try:
            while self._wakes:
                snapshot = await self._poll()
                self._publish(snapshot)
                if snapshot.final:
                    return
                self._sleeping = True
                try:
                    await asyncio.sleep(self.interval)
                finally:
                    self._sleeping = False
        finally:
            if not self._wakes:
                self._on_idle(self)

    async def _poll(self) -> Snapshot:
        try:
            return await self._fetch()
        except Exception:
            # The fetch functions turn every expected failure into a snapshot; anything else is a
            # bug, but one bad reply must not end a loop that other clients depend on.
            log.exception("polling %s failed", self.key)
            return Snapshot.problem("unavailable", "the gateway could not read this state; retrying")

    def _publish(self, snapshot: Snapshot) -> None:
        if snapshot == self.snapshot:
            return
        self.snapshot = snapshot
        self.version += 1
        self._ready.set()
        for wake in self._wakes:
            wake.set()


class Listener:
    """One open stream: the feeds it watches, and the event set when any of them changes."""

    def __init__(self, hub: FeedHub) -> None:
        self.hub = hub
        self.wake = asyncio.Event()
        self.feeds: list[Feed] = []
        self.closed = False

    def watch(self, key: Hashable, fetch: Fetch, interval: float) -> Feed:
        """The hub's feed for `key` (made with `fetch` if there is none), now watched by this stream."""
        feed = self.hub.feed(key, fetch, interval)
        feed.subscribe(self.wake)
        self.feeds.append(feed)
        return feed

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until a watched feed changes or the hub closes: False after `timeout` seconds of quiet
        (None: however long it takes)."""
        try:
            async with asyncio.timeout(timeout):
                await self.wake.wait()
        except TimeoutError:
            return False
        return True

    async def changes(self) -> AsyncIterator[Snapshot]:
        """Each watched feed's snapshot at once, then each change of it; ends after a final snapshot
        or when the hub closes."""
        sent = [0] * len(self.feeds)  # the version of each feed last yielded
        while True:
            # Cleared before reading, so that a change published while a snapshot is being sent
            # wakes the next round instead of being lost.
            self.wake.clear()
            for i, feed in enumerate(self.feeds):
                snapshot = feed.snapshot
                if snapshot is None or feed.version == sent[i]:
                    continue
                sent[i] = feed.version
                yield snapshot
                if snapshot.final:
                    return
            if self.hub.closing:
                return
            await self.wait()

    def close(self) -> None:
        """Stop watching and give the stream's slot back (idempotent)."""
        if self.closed:
            return
        self.closed = True
        for feed in self.feeds:
            feed.unsubscribe(self.wake)
        self.hub.release(self)


class FeedHub:
    """The feeds by key, and the open streams, at most `max_streams` of them."""

    def __init__(self, max_streams: int = MAX_STREAMS) -> None:
        self.max_streams = max_streams
        self.closing = False
        self.listeners: set[Listener] = set()
        self.feeds: dict[Hashable, Feed] = {}
        #: Set when the server begins to shut down, by the streams' responses (sse-starlette watches
        #: the server's exit signals and sets the event it was given); close_when_stopping acts on it.
        self.stopping = anyio.Event()

    def open(self) -> Listener | None:
        """A new stream's listener, or None when `max_streams` are open or the hub is closing."""
        if self.closing or len(self.listeners) >= self.max_streams:
            return None
        listener = Listener(self)
        self.listeners.add(listener)
        return listener

    def release(self, listener: Listener) -> None:
        self.listeners.discard(listener)

    def feed(self, key: Hashable, fetch: Fetch, interval: float) -> Feed:
        """The feed for `key`, made if there is none."""
        feed = self.feeds.get(key)
        if feed is None:
            feed = self.feeds[key] = Feed(key, fetch, interval, self._forget)
        return feed

    async def close_when_stopping(self) -> None:
        """Close the hub once `stopping` is set: every stream then ends cleanly, at once, instead of
        holding up the server's graceful shutdown until it cancels them."""
        await self.stopping.wait()
        self.close()

    def close(self) -> None:
        """End every stream and poll loop (idempotent): the server is shutting down."""
        self.closing = True
        for listener in list(self.listeners):
            listener.wake.set()
        for feed in list(self.feeds.values()):
            feed.stop()

    def _forget(self, feed: Feed) -> None:
        if self.feeds.get(feed.key) is feed:
            del self.feeds[feed.key]
