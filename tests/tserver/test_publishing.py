"""The aio-pika publisher on the machine's real RabbitMQ, each test on a queue of its own: the message
equals Celery's own, confirms are awaited, many at once, unroutable messages and nacks are refused."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

import amqp
import pytest

from testing.waiting import free_port
from tests.tserver.publishing_harness import (
    Relay,
    _channel,
    _delete_queue,
    _depth,
    _get_all,
    _publish_then_close,
    _run,
)
from tserver import publishing
from tserver.errors import NotPublished, QueueUnavailable
from tserver.publishing import TaskPublisher


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
