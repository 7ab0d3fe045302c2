"""Publishing calculations to RabbitMQ from the Thrift server's own event loop, with aio-pika.

The message is Celery's own (tserver/celery_message.py), sent by task name: the Thrift server imports
nothing of the worker. One connection and one channel per process, in confirm mode, opened on the first
publish and again after a failure; every message is persistent, `mandatory`, and published to the
default exchange with the queue's name as routing key, as Celery does for its direct queues.

A call returns only once RabbitMQ confirmed its message. Otherwise:

* NotPublished: nothing was sent (no connection, the channel closed before the publish, or the
  message came back unroutable): certainly not queued. Only this is retried, `retries` times.
* QueueUnavailable: a nack, the connection lost after the message was handed to aiormq, or no
  confirm within `timeout`: maybe queued. Never retried, so no message is sent twice.

Seen from outside: each attempt's outcome is counted (`count`, one of PUBLISH_OUTCOMES), and with a
tracer each call is a producer span, `apply_async/worker.calc_pi` as OpenTelemetry's Celery
instrumentation names a publish, whose context is written into the message's headers (`traceparent`,
`tracestate`, and `baggage` when there is any: the propagators of OTEL_PROPAGATORS) where that
instrumentation reads it in the worker: the task's span is this one's child.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping

import aio_pika
import aiormq
from aio_pika.abc import AbstractChannel, AbstractConnection, FieldValue
from opentelemetry.trace import SpanKind, Tracer
from yarl import URL

from tserver.celery_message import CALC_PI_TASK, celery_app, task_message
from tserver.errors import NotPublished, QueueUnavailable

# celery_app: the tests compare our message with Celery's own, sent with its reply_to.
__all__ = ["CALC_PI_TASK", "PUBLISH_OUTCOMES", "TaskPublisher", "amqp_url", "celery_app", "task_message"]

log = logging.getLogger(__name__)

# As for the Celery app: a dead connection is noticed within a few heartbeats.
_HEARTBEAT = 10

# aiormq hands every publish to the socket's writer through a queue of 10; with more callers than
# that, each waits for a slot while holding the channel's lock and the frames go out one loop turn
# each (at 32 callers: about a quarter fewer messages a second, a third more CPU each). The callers are
# bounded already (the Thrift server's connections, each awaiting its confirm). Set once per process,
# before any connection: aio-pika offers no way to pass its own connection class to aiormq.
aiormq.Connection.FRAME_BUFFER_SIZE = 4096

#: What became of one publish attempt (the label `outcome` of publishes_total): RabbitMQ confirmed it;
#: refused it (nack); returned it unroutable (the queue is gone); confirmed nothing in time, or the
#: connection was lost before it did (maybe queued); nothing was sent (no connection).
CONFIRMED, NACK, RETURNED, TIMEOUT, NOT_SENT = "confirmed", "nack", "returned", "timeout", "not_sent"
PUBLISH_OUTCOMES = (CONFIRMED, NACK, RETURNED, TIMEOUT, NOT_SENT)
#: The span of a publish, named as OpenTelemetry's Celery instrumentation names one.
PUBLISH_SPAN = f"apply_async/{CALC_PI_TASK}"


def amqp_url(broker_url: str, heartbeat: int) -> URL:
    """BROKER_URL as aiormq reads it: kombu's `pyamqp://` is plain AMQP; the heartbeat is a query
    parameter. (A path of `//`, Celery's spelling of the vhost `/`, means `/` to aiormq as well.)"""
    url = URL(broker_url)
    if url.scheme == "pyamqp":
        url = url.with_scheme("amqp")
    return url.update_query(heartbeat=str(heartbeat))


class TaskPublisher:
    """Publishes calc_pi tasks with publisher confirms; used from one event loop only."""

    def __init__(
        self,
        broker_url: str,
        queue: str,
        *,
        timeout: float,
        retries: int,
        queue_arguments: Mapping[str, FieldValue] | None = None,
        heartbeat: int = _HEARTBEAT,
        count: Callable[[str], None] | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.queue = queue
        self.timeout = timeout
        self.retries = retries
        self._url = amqp_url(broker_url, heartbeat)
        # Declared as the worker declares it (a quorum queue: {"x-queue-type": "quorum"}); RabbitMQ
        # refuses a declaration that differs from the existing queue's.
        self._queue_arguments = dict(queue_arguments) if queue_arguments else None
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None
        self._underlay: aiormq.Channel | None = None
        self._declared = False  # False again after a message came back unroutable
        self._opening: asyncio.Task[aiormq.Channel] | None = None  # shared by every caller waiting for it
        self._closing: set[asyncio.Task[None]] = set()
        self._closed = False
        self._confirms = 0  # messages confirmed so far: a watchdog compares it to tell a stuck broker
        self._count = count  # each attempt's outcome (metrics), if anyone counts
        self._tracer = tracer

    async def publish_calc_pi(self, task_id: str, decimal: int) -> None:
        """Publish one calculation; returns once RabbitMQ confirmed it, raises QueueUnavailable otherwise."""
        if self._tracer is None:
            await self._publish_attempts(*task_message(task_id, decimal))
            return
        attributes = {
            "messaging.system": "rabbitmq",
            "messaging.destination.name": self.queue,
            "messaging.operation.type": "send",
            "messaging.message.id": task_id,
            "celery.action": "apply_async",
            "celery.task_name": CALC_PI_TASK,
            "pi.task_id": task_id,
        }
        # A failure is recorded on the span (an exception event, status ERROR) as it leaves it.
        with self._tracer.start_as_current_span(PUBLISH_SPAN, kind=SpanKind.PRODUCER, attributes=attributes):
            await self._publish_attempts(*task_message(task_id, decimal, traced=True))

    async def _publish_attempts(self, body: bytes, properties: aiormq.spec.Basic.Properties) -> None:
        for attempt in range(self.retries + 1):
            try:
                await self._publish(body, properties)
                return
            except NotPublished:
                # Nothing was sent (typically: the connection broke while idle): a repeat cannot
                # queue the task twice.
                if attempt == self.retries:
                    raise

    async def close(self) -> None:
        """Close the connection; publishes still waiting fail, later ones raise NotPublished."""
        self._closed = True
        if self._opening is not None:
            self._opening.cancel()
            await asyncio.wait({self._opening})
        self._drop()
        if self._closing:
            await asyncio.wait(self._closing, timeout=self.timeout)

    async def _publish(self, body: bytes, properties: aiormq.spec.Basic.Properties) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        try:
            channel = await self._ready(deadline)
        except NotPublished:
            self._counted(NOT_SENT)
            raise
        connection = self._connection
        # From here on the message may reach RabbitMQ: a failure means "maybe queued".
        try:
            async with asyncio.timeout_at(deadline):
                # wait=False: by default aiormq holds the channel's lock until the frames are flushed
                # to the socket, one publish at a time (half the rate at 10 callers). The confirm is
                # what is awaited; the connection's bounded write queue still pushes back.
                await channel.basic_publish(
                    body, exchange="", routing_key=self.queue, properties=properties, mandatory=True, wait=False
                )
        except TimeoutError:
            # A broker that takes the message but confirms nothing (frozen, or blocked by a resource
            # alarm): unless it confirms something soon, start afresh on a new connection.
            loop.call_later(self.timeout, self._drop_if_stuck, connection, self._confirms)
            self._counted(TIMEOUT)
            raise QueueUnavailable(f"RabbitMQ did not confirm the message within {self.timeout:g} s") from None
        except aiormq.exceptions.PublishError:
            # Returned as unroutable: the queue is gone. Declare it again before the next publish.
            log.warning("RabbitMQ returned a message for %r: the queue does not exist", self.queue)
            self._declared = False
            self._counted(RETURNED)
            raise NotPublished("RabbitMQ could not route the message: the queue does not exist") from None
        except aiormq.exceptions.DeliveryError:
            self._counted(NACK)
            raise QueueUnavailable("RabbitMQ refused the message (nack)") from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # the caller is being cancelled
            # aiormq rejects the futures of a closed connection with the reason it closed, which
            # can be a CancelledError (e.g. its reader task was cancelled): not ours.
            self._counted(TIMEOUT)
            raise QueueUnavailable("lost the connection to RabbitMQ") from None
        except Exception as exc:
            log.warning("publishing failed: %r", exc)
            self._counted(TIMEOUT)
            raise QueueUnavailable(f"lost the connection to RabbitMQ: {exc!r}") from exc
        self._confirms += 1
        self._counted(CONFIRMED)

    def _counted(self, outcome: str) -> None:
        if self._count is not None:
            self._count(outcome)

    async def _ready(self, deadline: float) -> aiormq.Channel:
        """The open channel with the queue declared, opening them if needed; NotPublished otherwise."""
        if self._closed:
            raise NotPublished("the publisher is closed")
        channel = self._underlay
        if channel is not None and not channel.is_closed and self._declared:
            return channel
        if self._opening is None:
            # Bounded by this caller's deadline; whoever joins it later has a later one.
            opening = self._opening = asyncio.get_running_loop().create_task(self._open(deadline))
            opening.add_done_callback(self._opened)  # before any waiter resumes: a retry opens anew
        try:
            # Shielded: a caller that is cancelled does not cancel the others' connection.
            return await asyncio.shield(self._opening)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise NotPublished("the publisher was closed") from None  # close() cancelled the opening

    async def _open(self, deadline: float) -> aiormq.Channel:
        try:
            async with asyncio.timeout_at(deadline):
                if self._channel is None or self._channel.is_closed:
                    self._drop()
                    self._connection = connection = await aio_pika.connect(self._url)
                    # on_return_raises: a returned message fails its publish with PublishError.
                    self._channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
                    underlay = await self._channel.get_underlay_channel()
                    assert isinstance(underlay, aiormq.Channel)  # its basic_publish takes `wait`
                    self._underlay = underlay
                await self._channel.declare_queue(self.queue, durable=True, arguments=self._queue_arguments)
                self._declared = True
                assert self._underlay is not None
                return self._underlay
        except asyncio.CancelledError:
            self._drop()  # close() while connecting: leave no connection behind
            raise
        except Exception as exc:
            log.warning("cannot connect to RabbitMQ: %r", exc)
            self._drop()
            detail = f"no answer within {self.timeout:g} s" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
            raise NotPublished(f"cannot connect to RabbitMQ: {detail}") from exc

    def _opened(self, task: asyncio.Task[aiormq.Channel]) -> None:
        self._opening = None
        if not task.cancelled():
            task.exception()  # retrieved here: with no caller left waiting, asyncio would log it

    def _drop_if_stuck(self, connection: AbstractConnection | None, confirms: int) -> None:
        if connection is not None and connection is self._connection and self._confirms == confirms:
            log.warning("RabbitMQ confirmed nothing for %g s: reconnecting", self.timeout)
            self._drop()

    def _drop(self) -> None:
        """Forget the connection and close it in the background (a stuck broker cannot hold a caller)."""
        connection, self._connection, self._channel, self._underlay = self._connection, None, None, None
        self._declared = False
        if connection is not None and not connection.is_closed:
            closing = asyncio.get_running_loop().create_task(self._close_quietly(connection))
            self._closing.add(closing)
            closing.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_quietly(connection: AbstractConnection) -> None:
        try:
            await connection.close()
        except Exception as exc:  # noqa: BLE001 - best effort on a connection already broken
            log.debug("closing a dropped connection failed: %r", exc)
