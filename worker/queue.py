"""Publishing calculations to the broker: the one function the Thrift server calls to enqueue.

The message is Celery's own (task protocol 2, built by `app.amqp.as_task_v2` and serialized as
Celery would), so any Celery worker consumes it as `calc_pi`; tests/worker/test_queue.py compares
it with what `calc_pi.apply_async` publishes. Only the publishing is ours: a ConfirmedPublisher
keeps many messages in flight instead of one per thread (see worker/publisher.py for why).
"""

from __future__ import annotations

import asyncio
import threading

import amqp
from kombu.serialization import dumps
from kombu.transport import pyamqp

from worker.app import app, settings
from worker.errors import NotPublished, QueueUnavailable
from worker.publisher import ConfirmedPublisher
from worker.tasks import calc_pi

# Celery's task_default_delivery_mode: the message is written to disk by RabbitMQ.
_PERSISTENT = 2
# As for the Celery app (worker/app.py): a dead connection is noticed within ~2 heartbeats.
_HEARTBEAT = 10

_publisher: ConfirmedPublisher | None = None
_publisher_lock = threading.Lock()


def task_message(task_id: str, decimal: int) -> amqp.Message:
    """The AMQP message that `calc_pi.apply_async(args=(task_id, decimal), task_id=task_id)` sends."""
    args = (task_id, decimal)
    headers, properties, body, _ = app.amqp.as_task_v2(
        task_id, calc_pi.name, args=args, kwargs={}, ignore_result=calc_pi.ignore_result,
        reply_to=app.thread_oid,
        # What Celery's saferepr would write, without its cost (~50 us, the largest part of a publish).
        argsrepr=repr(args), kwargsrepr="{}",
    )
    content_type, content_encoding, data = dumps(body, serializer=app.conf.task_serializer)
    return amqp.Message(data, content_type=content_type, content_encoding=content_encoding,
                        application_headers=headers, delivery_mode=_PERSISTENT, **properties)


def connect(queue: str | None = None, broker_url: str | None = None,
            heartbeat: float = _HEARTBEAT) -> tuple[amqp.Connection, amqp.Channel]:
    """A connection to the broker (BROKER_URL) and a channel in confirm mode, with the queue
    (CELERY_QUEUE) declared as the Celery worker declares it."""
    # kombu's reading of the URL, defaults filled in (it does not connect).
    broker = app.connection_for_write(broker_url).info()
    conn = pyamqp.Connection(  # py-amqp, with kombu's channel class (it knows Celery's queue arguments)
        host=f"{broker['hostname']}:{broker['port']}", userid=broker["userid"], password=broker["password"],
        virtual_host=broker["virtual_host"], ssl=broker["ssl"], connect_timeout=settings.PUBLISH_TIMEOUT,
        read_timeout=settings.PUBLISH_TIMEOUT, write_timeout=settings.PUBLISH_TIMEOUT, heartbeat=heartbeat,
    )
    try:
        conn.connect()
        channel = conn.channel()
        channel.confirm_select()
        app.amqp.queues[queue or settings.CELERY_QUEUE](channel).declare()
    except BaseException:
        conn.collect()
        raise
    return conn, channel


def publisher() -> ConfirmedPublisher:
    """This process's publisher (created on first use)."""
    global _publisher
    with _publisher_lock:
        if _publisher is None:
            _publisher = ConfirmedPublisher(connect, stuck_after=2 * settings.PUBLISH_TIMEOUT + 1)
        return _publisher


async def enqueue_calc_pi(task_id: str, decimal: int) -> None:
    """Publish one calculation, returning only once RabbitMQ confirmed it; QueueUnavailable otherwise.

    Waits on the event loop, not in a thread: the publisher's thread settles the future."""
    loop = asyncio.get_running_loop()
    message = task_message(task_id, decimal)
    for attempt in range(settings.PUBLISH_RETRIES + 1):
        confirmed: asyncio.Future[None] = loop.create_future()

        def on_done(error: QueueUnavailable | None, confirmed: asyncio.Future[None] = confirmed) -> None:
            loop.call_soon_threadsafe(_settle, confirmed, error)

        # Celery publishes to a direct queue through the default exchange, the queue's name as key.
        job = publisher().submit(message, exchange="", routing_key=settings.CELERY_QUEUE, on_done=on_done)
        try:
            async with asyncio.timeout(settings.PUBLISH_TIMEOUT):
                await confirmed
            return
        except TimeoutError:
            job.abandoned = True
            raise QueueUnavailable(f"RabbitMQ did not confirm the message within {settings.PUBLISH_TIMEOUT:g} s") \
                from None
        except NotPublished:
            # Nothing was sent (typically: the connection broke while idle), so a repeat cannot
            # queue the task twice.
            if attempt == settings.PUBLISH_RETRIES:
                raise


def _settle(future: asyncio.Future[None], error: QueueUnavailable | None) -> None:
    if future.done():  # the caller gave up (timeout, cancelled)
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(error)


def close_publisher() -> None:
    """Close the publisher's connection (at shutdown)."""
    global _publisher
    with _publisher_lock:
        if _publisher is not None:
            _publisher.close()
            _publisher = None
