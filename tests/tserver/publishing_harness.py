"""The harness of the publisher's tests: RabbitMQ reached directly (py-amqp), a relay in front of it
that can hold the broker's bytes back or cut the connection, and a server that never answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import amqp
import uvloop
from yarl import URL

import testing.relay
from tserver.publishing import TaskPublisher

T = TypeVar("T")


@contextmanager
def _channel(broker_url: str) -> Iterator[amqp.Channel]:
    """A plain py-amqp channel to the broker, for looking at queues behind the publisher's back."""
    url = URL(broker_url)
    conn = amqp.Connection(f"{url.host}:{url.port}", userid=url.user, password=url.password)
    conn.connect()
    try:
        yield conn.channel()
    finally:
        conn.close()


def _get_all(broker_url: str, queue: str) -> list[amqp.Message]:
    with _channel(broker_url) as channel:
        messages = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
        return messages


def _delete_queue(broker_url: str, queue: str) -> None:
    with _channel(broker_url) as channel:
        channel.queue_delete(queue)


def _depth(broker_url: str, queue: str) -> int:
    with _channel(broker_url) as channel:
        return int(channel.queue_declare(queue, passive=True).message_count)


async def _eventually(check: Callable[[], T], want: T, timeout: float = 5.0) -> None:
    """Poll `check` (blocking, so in a thread: the loop keeps serving the publisher) until it returns `want`."""
    deadline = time.monotonic() + timeout
    while (got := await asyncio.to_thread(check)) != want:
        assert time.monotonic() < deadline, f"still {got!r} after {timeout} s, wanted {want!r}"
        await asyncio.sleep(0.05)


def _run(coro: Awaitable[T]) -> T:
    """Run on uvloop, as the Thrift server does."""

    async def main() -> T:
        return await coro

    return uvloop.run(main())


async def _publish_then_close(publisher: TaskPublisher, *task_ids: str, decimal: int = 1) -> None:
    try:
        for task_id in task_ids:
            await publisher.publish_calc_pi(task_id, decimal)
    finally:
        await publisher.close()


class Relay(testing.relay.Relay):
    """A relay in front of RabbitMQ, with the broker URL that goes through it."""

    def __init__(self, broker_url: str) -> None:
        url = URL(broker_url)
        super().__init__((url.host or "127.0.0.1", url.port or 5672))
        self.url = str(url.with_host(self.host).with_port(self.port))

    @property
    def from_broker(self) -> int:
        """Bytes passed on from the broker to the publisher."""
        return self.from_server


@contextmanager
def _silent_server(*, hang_up: bool = False) -> Iterator[tuple[str, list[socket.socket]]]:
    """A server that accepts connections and then says nothing (or hangs up at once): its URL and
    the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            accepted.append(conn)
            if hang_up:
                conn.close()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}//", accepted
    finally:
        with suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        for conn in accepted:
            conn.close()
