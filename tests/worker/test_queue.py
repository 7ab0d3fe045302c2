"""The publishing path on the machine's real RabbitMQ, each test on a queue of its own: the message
equals Celery's own, confirms are awaited, and every broker fault ends in a clear QueueUnavailable."""

from __future__ import annotations

import asyncio
import functools
import json
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import amqp
import pytest

from testing.waiting import free_port, wait_for
from worker import queue as publishing
from worker.app import app
from worker.errors import NotPublished, QueueUnavailable
from worker.publisher import ConfirmedPublisher
from worker.tasks import calc_pi


@pytest.fixture
def queue_name(broker_url: str) -> Iterator[str]:
    name = f"test-pub-{uuid.uuid4().hex[:12]}"
    yield name
    conn = amqp.Connection(_host(broker_url), userid="guest", password="guest")
    conn.connect()
    try:
        conn.channel().queue_delete(name)
    finally:
        conn.close()


def _host(broker_url: str) -> str:
    info = app.connection_for_write(broker_url).info()
    return f"{info['hostname']}:{info['port']}"


def _connector(broker_url: str, queue: str, **kwargs: object):  # noqa: ANN202
    return functools.partial(publishing.connect, queue, broker_url, **kwargs)


def _counting(connect, connections: list):  # noqa: ANN001, ANN202
    """`connect`, recording every connection it opens in `connections`."""
    def counting_connect() -> tuple[amqp.Connection, amqp.Channel]:
        conn, channel = connect()
        connections.append(conn)
        return conn, channel

    return counting_connect


def _get_all(broker_url: str, queue: str) -> list[amqp.Message]:
    conn, channel = publishing.connect(queue, broker_url)
    try:
        messages = []
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            messages.append(message)
        return messages
    finally:
        conn.close()


def _depth(broker_url: str, queue: str) -> int:
    conn, channel = publishing.connect(queue, broker_url)
    try:
        return channel.queue_declare(queue, passive=True).message_count
    finally:
        conn.close()


def test_message_is_the_one_celery_sends(broker_url: str, queue_name: str) -> None:
    task_id = str(uuid.uuid4())
    with app.connection_for_write(broker_url) as conn:
        calc_pi.apply_async(args=(task_id, 7), task_id=task_id, queue=queue_name, connection=conn)
    (celerys,) = _get_all(broker_url, queue_name)

    publisher = ConfirmedPublisher(_connector(broker_url, queue_name))
    try:
        publisher.publish(publishing.task_message(task_id, 7), exchange="", routing_key=queue_name, timeout=5)
    finally:
        publisher.close()
    (ours,) = _get_all(broker_url, queue_name)

    assert json.loads(ours.body) == json.loads(celerys.body) == [[task_id, 7], {}, {
        "callbacks": None, "errbacks": None, "chain": None, "chord": None}]
    assert ours.headers == celerys.headers
    assert ours.headers["task"] == calc_pi.name and ours.headers["id"] == task_id
    assert ours.properties == celerys.properties  # content type, delivery mode, correlation id, ...
    assert ours.properties["delivery_mode"] == 2  # persistent: it survives a broker restart


def test_concurrent_publishes_are_all_confirmed_and_queued(broker_url: str, queue_name: str) -> None:
    publisher = ConfirmedPublisher(_connector(broker_url, queue_name))
    errors: list[BaseException] = []

    def publish_many() -> None:
        for _ in range(100):
            try:
                publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="",
                                  routing_key=queue_name, timeout=5)
            except BaseException as exc:  # noqa: BLE001 - collected and asserted below
                errors.append(exc)

    threads = [threading.Thread(target=publish_many) for _ in range(8)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    finally:
        publisher.close()
    assert errors == []
    assert _depth(broker_url, queue_name) == 800


def test_an_unreachable_broker_fails_fast_as_not_published(queue_name: str) -> None:
    publisher = ConfirmedPublisher(_connector(f"amqp://guest:guest@127.0.0.1:{free_port()}//", queue_name))
    try:
        started = time.monotonic()
        with pytest.raises(NotPublished, match="cannot connect"):
            publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="",
                              routing_key=queue_name, timeout=5)
        assert time.monotonic() - started < 2
    finally:
        publisher.close()


def test_wrong_credentials_are_not_published(broker_url: str, queue_name: str) -> None:
    bad = broker_url.replace("guest:guest@", "guest:wrong-password@")
    assert bad != broker_url
    publisher = ConfirmedPublisher(_connector(bad, queue_name))
    try:
        with pytest.raises(NotPublished):
            publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="",
                              routing_key=queue_name, timeout=5)
    finally:
        publisher.close()


def test_an_unroutable_message_is_refused_then_the_queue_is_declared_again(broker_url: str,
                                                                          queue_name: str) -> None:
    publisher = ConfirmedPublisher(_connector(broker_url, queue_name))
    try:
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
        # Somebody deletes the queue under the running publisher: the next message has nowhere to go.
        conn, channel = publishing.connect(queue_name, broker_url)
        channel.queue_delete(queue_name)
        conn.close()
        with pytest.raises(NotPublished, match="could not route"):
            publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="",
                              routing_key=queue_name, timeout=5)
        # The publisher reconnects, which declares the queue again.
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
    finally:
        publisher.close()
    assert _depth(broker_url, queue_name) == 1


def test_a_connection_closed_by_the_broker_is_replaced(broker_url: str, queue_name: str) -> None:
    connections: list[amqp.Connection] = []
    publisher = ConfirmedPublisher(_counting(_connector(broker_url, queue_name), connections))
    try:
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
        # Cut the connection under the publisher, as a broker restart does.
        connections[0].sock.shutdown(socket.SHUT_RDWR)
        wait_for(lambda: not connections[0].connected, 5, "the publisher to notice the lost connection")
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
    finally:
        publisher.close()
    assert len(connections) == 2
    assert _depth(broker_url, queue_name) == 2


def test_heartbeats_keep_an_idle_connection(broker_url: str, queue_name: str) -> None:
    # With a 2 s heartbeat RabbitMQ sends a heartbeat frame every second; reading one must not
    # be taken for a broken connection (py-amqp's drain_events would wait for another frame).
    connections: list[amqp.Connection] = []
    publisher = ConfirmedPublisher(_counting(_connector(broker_url, queue_name, heartbeat=2), connections))
    try:
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
        time.sleep(5)
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)
    finally:
        publisher.close()
    assert len(connections) == 1
    assert connections[0].last_heartbeat_received > 0


def test_close_fails_later_publishes(broker_url: str, queue_name: str) -> None:
    publisher = ConfirmedPublisher(_connector(broker_url, queue_name))
    publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                      timeout=5)
    publisher.close()
    with pytest.raises(NotPublished, match="closed"):
        publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue_name,
                          timeout=5)


def test_a_broker_that_never_confirms_times_out(queue_name: str) -> None:
    # A server that accepts the connection and then says nothing: the caller is not kept waiting
    # past its timeout, and the error does not claim the message was not sent.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    publisher = ConfirmedPublisher(_connector(f"amqp://guest:guest@127.0.0.1:{port}//", queue_name))
    try:
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            publisher.publish(publishing.task_message(str(uuid.uuid4()), 1), exchange="",
                              routing_key=queue_name, timeout=0.5)
        assert time.monotonic() - started < 1.0
    finally:
        publisher.close()
        listener.close()
        for s in accepted:
            s.close()


@pytest.fixture
def swap_publisher():  # noqa: ANN201
    """Points worker.queue's process-wide publisher at another connect function for one test."""
    made: list[ConfirmedPublisher] = []

    def swap(connect) -> ConfirmedPublisher:  # noqa: ANN001
        publisher = ConfirmedPublisher(connect)
        made.append(publisher)
        publishing._publisher = publisher
        return publisher

    yield swap
    publishing._publisher = None
    for publisher in made:
        publisher.close()


def test_enqueue_is_confirmed_on_the_event_loop(broker_url: str, queue_name: str, swap_publisher) -> None:  # noqa: ANN001
    swap_publisher(_connector(broker_url, queue_name))
    original_queue = publishing.settings.CELERY_QUEUE
    publishing.settings.CELERY_QUEUE = queue_name
    try:
        async def many() -> None:
            await asyncio.gather(*(publishing.enqueue_calc_pi(str(uuid.uuid4()), 3) for _ in range(50)))

        asyncio.run(many())
    finally:
        publishing.settings.CELERY_QUEUE = original_queue
    assert _depth(broker_url, queue_name) == 50


def test_enqueue_retries_what_was_not_sent_then_gives_up(queue_name: str, swap_publisher) -> None:  # noqa: ANN001
    attempts: list[int] = []
    connect = _connector(f"amqp://guest:guest@127.0.0.1:{free_port()}//", queue_name)

    def counting_connect() -> tuple[amqp.Connection, amqp.Channel]:
        attempts.append(1)  # counted before it fails: _counting records only connections made
        return connect()

    swap_publisher(counting_connect)
    with pytest.raises(NotPublished):
        asyncio.run(publishing.enqueue_calc_pi(str(uuid.uuid4()), 3))
    assert len(attempts) == publishing.settings.PUBLISH_RETRIES + 1


def test_enqueue_gives_up_after_the_publish_timeout(queue_name: str, swap_publisher) -> None:  # noqa: ANN001
    # A broker that takes the connection and never answers the handshake.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True).start()
    swap_publisher(_connector(f"amqp://guest:guest@127.0.0.1:{listener.getsockname()[1]}//", queue_name))
    settings = publishing.settings
    try:
        started = time.monotonic()
        with pytest.raises(QueueUnavailable):
            asyncio.run(publishing.enqueue_calc_pi(str(uuid.uuid4()), 3))
        # Each attempt is bounded by PUBLISH_TIMEOUT (the handshake's read timeout or the wait for
        # the confirm, whichever ends first): the caller is never kept waiting longer.
        assert time.monotonic() - started < (settings.PUBLISH_RETRIES + 1) * settings.PUBLISH_TIMEOUT + 1
    finally:
        listener.close()
        for s in accepted:
            s.close()
