"""The message of a calculation, as Celery itself would send it: task protocol 2, built by `as_task_v2` of a
Celery app private to this module and serialized as Celery serializes it, for the task named
CALC_PI_TASK (the Thrift server imports nothing of the worker; tests/tserver/test_publishing.py checks
the name and compares the message with Celery's own)."""

from __future__ import annotations

import aiormq
from celery import Celery
from kombu.serialization import dumps
from opentelemetry import propagate

#: The name the worker registers its task under.
CALC_PI_TASK = "worker.calc_pi"
# As the worker's app sets task_ignore_result: progress and results live in the state store.
_IGNORE_RESULT = True
# Celery's task_default_delivery_mode: RabbitMQ writes the message to disk.
_PERSISTENT = 2

# Only builds messages: it has no broker and never becomes the process's current app.
celery_app = Celery("tserver", set_as_current=False)
celery_app.conf.update(task_serializer="json", accept_content=["json"])


def task_message(task_id: str, decimal: int, *, traced: bool = False) -> tuple[bytes, aiormq.spec.Basic.Properties]:
    """Body and properties of the message `calc_pi.apply_async(args=(task_id, decimal),
    task_id=task_id)` sends, plus a message_id (aiormq matches a returned message by it). `traced`: the
    current trace context is written among its headers (`traceparent`, `tracestate`, `baggage`: what the
    propagators write), as OpenTelemetry's Celery instrumentation writes it for Celery's own publish and
    reads it in the worker (Celery copies the message's headers onto `task.request`)."""
    args = (task_id, decimal)
    headers, properties, body, _ = celery_app.amqp.as_task_v2(
        task_id,
        CALC_PI_TASK,
        args=args,
        kwargs={},
        ignore_result=_IGNORE_RESULT,
        reply_to=celery_app.thread_oid,
        # What Celery's saferepr writes for these arguments, without its cost.
        argsrepr=repr(args),
        kwargsrepr="{}",
    )
    if traced:
        propagate.inject(headers)
    content_type, content_encoding, data = dumps(body, serializer="json")
    # Without an id aiormq would draw a random one: the task's id names the message in RabbitMQ's tools.
    return (data.encode() if isinstance(data, str) else data), aiormq.spec.Basic.Properties(
        content_type=content_type,
        content_encoding=content_encoding,
        headers=headers,
        delivery_mode=_PERSISTENT,
        correlation_id=properties["correlation_id"],
        reply_to=properties["reply_to"],
        message_id=task_id,
    )
