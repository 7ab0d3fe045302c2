"""The aio-pika publisher on the machine's real RabbitMQ, each test on a queue of its own: the message
equals Celery's own, confirms are awaited, and every broker fault ends in a clear QueueUnavailable
(NotPublished when nothing was sent). Faults between the publisher and RabbitMQ are injected by a
relay in front of it that can hold the broker's bytes back or cut the connection."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager, suppress
from typing import TypeVar

import amqp
import pytest
import uvloop
from yarl import URL

from testing.waiting import free_port
from tserver import publishing
from tserver.errors import NotPublished, QueueUnavailable
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


class Relay:
    """A TCP relay in front of RabbitMQ. `hold()` keeps the broker's bytes from the client (a broker
    that takes messages and answers nothing); `cut()` closes every connection (a broker restart)."""

    def __init__(self, broker_url: str) -> None:
        url = URL(broker_url)
        self._target = (url.host or "127.0.0.1", url.port or 5672)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = str(url.with_host("127.0.0.1").with_port(self._listener.getsockname()[1]))
        self.accepted = 0
        self.from_broker = 0  # bytes passed on to the client
        self._flowing = threading.Event()
        self._flowing.set()
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold(self) -> None:
        self._flowing.clear()

    def release(self) -> None:
        self._flowing.set()

    def cut(self) -> None:
        for sock in self._sockets:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with suppress(OSError):  # wakes the accepting thread: a plain close() would leave it listening
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self.cut()
        self.release()
        for sock in self._sockets:
            sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.accepted += 1
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, from_broker: bool) -> None:
        try:
            while data := source.recv(65536):
                if from_broker:
                    self._flowing.wait()
                    self.from_broker += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)


@pytest.fixture
def relay(broker_url: str) -> Iterator[Relay]:
    relay = Relay(broker_url)
    yield relay
    relay.close()


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


def test_the_task_name_is_the_one_the_worker_registers() -> None:
    from worker.tasks import calc_pi

    assert calc_pi.name == publishing.CALC_PI_TASK


def test_message_is_the_one_celery_sends(broker_url: str, queue_name: str) -> None:
    from worker.app import app
    from worker.tasks import calc_pi

    task_id = str(uuid.uuid4())
    with app.connection_for_write(broker_url) as conn:
        # reply_to names the sending app and thread (Celery's result queue; no result is kept):
        # Celery's own is given ours, so that every other field must match as it is.
        calc_pi.apply_async(
            args=(task_id, 7),
            task_id=task_id,
            queue=queue_name,
            connection=conn,
            reply_to=publishing.celery_app.thread_oid,
        )
    (celerys,) = _get_all(broker_url, queue_name)

    _run(_publish_then_close(TaskPublisher(broker_url, queue_name, timeout=5, retries=0), task_id, decimal=7))
    (ours,) = _get_all(broker_url, queue_name)

    # Decoded by py-amqp, as the Celery worker decodes it.
    assert (
        json.loads(ours.body)
        == json.loads(celerys.body)
        == [[task_id, 7], {}, {"callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    )
    assert ours.headers == celerys.headers  # None values too (sent as AMQP void)
    assert ours.headers["task"] == "worker.calc_pi" and ours.headers["id"] == task_id
    assert ours.headers["ignore_result"] is calc_pi.ignore_result
    # The one addition: the message_id aiormq needs to match a returned message; Celery sends none.
    ours_properties = dict(ours.properties)
    assert ours_properties.pop("message_id") == task_id
    assert ours_properties == celerys.properties  # content type, delivery mode, correlation id, ...
    assert ours.properties["delivery_mode"] == 2  # persistent: it survives a broker restart
    assert ours.delivery_info["exchange"] == "" and ours.delivery_info["routing_key"] == queue_name


def test_concurrent_publishes_are_all_confirmed_and_queued(broker_url: str, queue_name: str, relay: Relay) -> None:
    async def publish_many() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=5, retries=0)
        try:
            await asyncio.gather(*(publisher.publish_calc_pi(str(uuid.uuid4()), 1) for _ in range(800)))
        finally:
            await publisher.close()

    _run(publish_many())
    assert _depth(broker_url, queue_name) == 800
    assert relay.accepted == 1  # the callers waiting for the first connection shared it


def test_publishes_on_a_plain_asyncio_loop_too(broker_url: str, queue_name: str) -> None:
    async def publish_many() -> None:
        publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=0)
        try:
            await asyncio.gather(*(publisher.publish_calc_pi(str(uuid.uuid4()), 3) for _ in range(50)))
        finally:
            await publisher.close()

    asyncio.run(publish_many())
    assert _depth(broker_url, queue_name) == 50


def test_an_unreachable_broker_fails_fast_as_not_published(queue_name: str) -> None:
    publisher = TaskPublisher(f"amqp://guest:guest@127.0.0.1:{free_port()}//", queue_name, timeout=5, retries=0)
    started = time.monotonic()
    with pytest.raises(NotPublished, match="cannot connect"):
        _run(_publish_then_close(publisher, str(uuid.uuid4())))
    assert time.monotonic() - started < 2


def test_wrong_credentials_are_not_published(broker_url: str, queue_name: str) -> None:
    bad = broker_url.replace("guest:guest@", "guest:wrong-password@")
    assert bad != broker_url
    with pytest.raises(NotPublished, match="cannot connect"):
        _run(_publish_then_close(TaskPublisher(bad, queue_name, timeout=5, retries=0), str(uuid.uuid4())))


def test_an_unroutable_message_is_refused_then_the_queue_is_declared_again(broker_url: str, queue_name: str) -> None:
    async def scenario() -> None:
        publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=0)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            # Somebody deletes the queue under the running publisher: the next message has nowhere to go.
            await asyncio.to_thread(_delete_queue, broker_url, queue_name)
            with pytest.raises(NotPublished, match="could not route"):
                await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            # The next publish declares the queue again first.
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
        finally:
            await publisher.close()

    _run(scenario())
    assert _depth(broker_url, queue_name) == 1


def test_a_returned_message_is_retried_once_the_queue_is_declared_again(broker_url: str, queue_name: str) -> None:
    # Returned means certainly not queued, so with a retry the caller never sees the deleted queue,
    # and the task is queued exactly once.
    async def scenario() -> None:
        publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=1)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            await asyncio.to_thread(_delete_queue, broker_url, queue_name)
            await publisher.publish_calc_pi("second", 1)
        finally:
            await publisher.close()

    _run(scenario())
    assert [m.headers["id"] for m in _get_all(broker_url, queue_name)] == ["second"]


def test_a_nack_is_queue_unavailable(broker_url: str, queue_name: str) -> None:
    # A full queue that rejects new messages: RabbitMQ nacks them.
    full = {"x-max-length": 0, "x-overflow": "reject-publish"}
    publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=1, queue_arguments=full)
    with pytest.raises(QueueUnavailable, match="nack") as raised:
        _run(_publish_then_close(publisher, str(uuid.uuid4())))
    assert not isinstance(raised.value, NotPublished)  # a nack is not retried
    assert _depth(broker_url, queue_name) == 0


def test_a_quorum_queue_is_declared_with_its_arguments(broker_url: str, queue_name: str) -> None:
    quorum = {"x-queue-type": "quorum"}
    _run(
        _publish_then_close(
            TaskPublisher(broker_url, queue_name, timeout=5, retries=0, queue_arguments=quorum), str(uuid.uuid4())
        )
    )
    assert _depth(broker_url, queue_name) == 1
    with _channel(broker_url) as channel:  # the same declaration is accepted: it is that queue
        channel.queue_declare(queue_name, durable=True, auto_delete=False, arguments=quorum)
    with _channel(broker_url) as channel, pytest.raises(amqp.exceptions.PreconditionFailed):
        channel.queue_declare(queue_name, durable=True, auto_delete=False)  # a classic one would differ


def test_a_connection_closed_by_the_broker_is_replaced(broker_url: str, queue_name: str, relay: Relay) -> None:
    async def scenario() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=5, retries=0)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            # Cut the connection under the publisher, as a broker restart does, and let it notice.
            relay.cut()
            await asyncio.sleep(0.2)
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
        finally:
            await publisher.close()

    _run(scenario())
    assert relay.accepted == 2
    assert _depth(broker_url, queue_name) == 2


def test_a_connection_lost_while_idle_is_not_published_when_none_can_be_opened(queue_name: str, relay: Relay) -> None:
    # The broker went away between two publishes: the closed channel is noticed before anything is
    # sent, so the caller learns that nothing was queued (and each retry tried a new connection).
    async def scenario() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=2, retries=1)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            relay.close()  # cuts the connection and takes no new one
            await asyncio.sleep(0.2)
            started = time.monotonic()
            with pytest.raises(NotPublished, match="cannot connect"):
                await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            assert time.monotonic() - started < 1.0  # refused at once, not at the timeout
        finally:
            await publisher.close()

    _run(scenario())


def test_heartbeats_keep_an_idle_connection(broker_url: str, queue_name: str, relay: Relay) -> None:
    # With a 1 s heartbeat aiormq sends one every second and drops a connection that has received
    # no frame for 6 s; RabbitMQ drops one that sent none for 2 s. Idle for 7 s, the connection lives.
    async def scenario() -> int:
        publisher = TaskPublisher(relay.url, queue_name, timeout=5, retries=0, heartbeat=1)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            before = relay.from_broker
            await asyncio.sleep(7)
            idle_bytes = relay.from_broker - before
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            return idle_bytes
        finally:
            await publisher.close()

    idle_bytes = _run(scenario())
    assert relay.accepted == 1
    assert idle_bytes >= 5 * 8  # RabbitMQ's heartbeat frames (8 bytes each) reached the publisher
    assert _depth(broker_url, queue_name) == 2


def test_close_fails_later_publishes(broker_url: str, queue_name: str) -> None:
    async def scenario() -> None:
        publisher = TaskPublisher(broker_url, queue_name, timeout=5, retries=1)
        await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
        await publisher.close()
        with pytest.raises(NotPublished, match="closed"):
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)

    _run(scenario())
    assert _depth(broker_url, queue_name) == 1


def test_a_broker_that_never_answers_times_out(queue_name: str) -> None:
    # A server that accepts the connection and then says nothing: the caller is not kept waiting
    # past its timeout. The handshake never ended, so nothing was sent: NotPublished.
    with _silent_server() as (url, _accepted):
        started = time.monotonic()
        with pytest.raises(NotPublished, match="cannot connect"):
            _run(_publish_then_close(TaskPublisher(url, queue_name, timeout=0.5, retries=0), str(uuid.uuid4())))
        assert time.monotonic() - started < 1.0


def test_a_broker_that_stops_confirming_times_out_then_is_left(broker_url: str, queue_name: str, relay: Relay) -> None:
    # Connected, then RabbitMQ takes the message and its answers stop coming (frozen, or blocked by
    # a resource alarm): QueueUnavailable in time, not NotPublished (it was sent), not retried.
    async def scenario() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=0.5, retries=1)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            relay.hold()
            started = time.monotonic()
            with pytest.raises(QueueUnavailable, match="did not confirm") as raised:
                await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            assert time.monotonic() - started < 1.0
            assert not isinstance(raised.value, NotPublished)
            await _eventually(lambda: _depth(broker_url, queue_name), 2)  # maybe queued: here, it was
            # Nothing confirmed for another timeout: the publisher gives that connection up, and once
            # the broker answers again a new one serves.
            await asyncio.sleep(0.7)
            relay.release()
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
        finally:
            await publisher.close()

    _run(scenario())
    assert relay.accepted == 2
    assert _depth(broker_url, queue_name) == 3  # the unconfirmed message was not sent again


def test_a_connection_lost_after_sending_is_maybe_queued(broker_url: str, queue_name: str, relay: Relay) -> None:
    async def scenario() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=5, retries=1)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)
            relay.hold()
            publish = asyncio.ensure_future(publisher.publish_calc_pi(str(uuid.uuid4()), 1))
            await _eventually(lambda: _depth(broker_url, queue_name), 2)  # RabbitMQ has it, unconfirmed
            started = time.monotonic()
            relay.cut()
            with pytest.raises(QueueUnavailable, match="lost the connection") as raised:
                await publish
            assert time.monotonic() - started < 1.0  # noticed at once, not at the timeout
            assert not isinstance(raised.value, NotPublished)
            relay.release()
        finally:
            await publisher.close()

    _run(scenario())
    assert relay.accepted == 1  # not retried: it may be queued (and is)
    assert _depth(broker_url, queue_name) == 2


def test_retries_what_was_not_sent_then_gives_up(queue_name: str) -> None:
    # Each attempt's connection is accepted and hung up at once: nothing is sent, so each is retried.
    with _silent_server(hang_up=True) as (url, accepted):
        publisher = TaskPublisher(url, queue_name, timeout=1.5, retries=2)
        with pytest.raises(NotPublished):
            _run(_publish_then_close(publisher, str(uuid.uuid4())))
        assert len(accepted) == 3


def test_gives_up_after_the_timeout(queue_name: str) -> None:
    # A broker that takes the connection and never answers the handshake, with the product's
    # default timeout and retries: every attempt is bounded by the timeout, the caller is never
    # kept waiting longer.
    with _silent_server() as (url, accepted):
        publisher = TaskPublisher(url, queue_name, timeout=1.5, retries=1)
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            _run(_publish_then_close(publisher, str(uuid.uuid4())))
        assert time.monotonic() - started < (1 + 1) * 1.5 + 1
        assert len(accepted) == 2


def test_the_broker_url_is_read_as_kombu_reads_it() -> None:
    url = publishing.amqp_url("pyamqp://user:secret@rabbit:5673//", heartbeat=10)
    assert (url.scheme, url.host, url.port, url.user, url.password) == ("amqp", "rabbit", 5673, "user", "secret")
    assert url.query["heartbeat"] == "10"
    assert url.path == "//"  # aiormq's vhost: "/"
