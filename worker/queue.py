"""Publishing calculations to the broker: the one function the Thrift server calls to enqueue."""

from __future__ import annotations

import logging
import socket

from kombu.exceptions import KombuError, OperationalError

from worker.app import app, settings
from worker.errors import QueueUnavailable
from worker.tasks import calc_pi

log = logging.getLogger(__name__)


def enqueue_calc_pi(task_id: str, decimal: int) -> None:
    """Publish one calculation, returning only once RabbitMQ confirmed it; QueueUnavailable otherwise."""
    try:
        calc_pi.apply_async(
            args=(task_id, decimal),
            task_id=task_id,
            queue=settings.CELERY_QUEUE,
            retry=True,
            confirm_timeout=settings.PUBLISH_TIMEOUT,
        )
    except (OperationalError, KombuError, OSError, socket.timeout, TimeoutError) as exc:
        log.warning("publishing task %s failed: %r", task_id, exc)
        raise QueueUnavailable(f"the task queue is unavailable: {exc}") from exc


def ping_broker() -> bool:
    """True if the broker accepts a connection within the publish timeout."""
    try:
        with app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=0, timeout=settings.PUBLISH_TIMEOUT)
        return True
    except (OperationalError, KombuError, OSError):
        return False
