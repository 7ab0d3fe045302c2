"""The aio-pika publisher when the broker fails: every fault ends in a clear QueueUnavailable
(NotPublished when nothing was sent), injected by a relay in front of RabbitMQ that can hold the
broker's bytes back or cut the connection, or by a server that never answers."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from tests.tserver.publishing_harness import (
    Relay,
    _depth,
    _eventually,
    _publish_then_close,
    _run,
    _silent_server,
)
from tserver import publishing
from tserver.errors import NotPublished, QueueUnavailable
from tserver.publishing import TaskPublisher


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
