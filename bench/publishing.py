"""The publishing layer alone: ConfirmedPublisher (the product's) beside Celery's apply_async.

Both publish the same calc_pi message with publisher confirms to a private queue on the same
RabbitMQ, from `threads` threads of this process, for `seconds` per run, alternating run by run
(ABAB...), so that a noisy neighbour hits both alike. CPU is this process's user + system time per
confirmed message. The queue is deleted afterwards.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
import uuid
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

OURS = "ConfirmedPublisher"
CELERYS = "Celery apply_async (baseline)"


@dataclass
class LayerResult:
    rates: dict[str, list[float]] = field(default_factory=dict)  # confirmed messages per second, per run
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # CPU ms per message, per run


def publish_side_by_side(broker_url: str, threads: int, seconds: float, runs: int) -> LayerResult:
    """`runs` runs of each, alternating; raises if any publish fails."""
    from worker import queue as publishing
    from worker.app import app
    from worker.publisher import ConfirmedPublisher
    from worker.tasks import calc_pi

    queue = f"bench-publish-{uuid.uuid4().hex[:12]}"
    publisher = ConfirmedPublisher(functools.partial(publishing.connect, queue, broker_url))
    # A kombu connection is not thread-safe: each thread gets its own, as from Celery's pool.
    local = threading.local()
    celery_conns: list = []

    def ours() -> None:
        task_id = str(uuid.uuid4())
        publisher.publish(publishing.task_message(task_id, 1), exchange="", routing_key=queue, timeout=5)

    def celerys() -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = app.connection_for_write(broker_url)
            celery_conns.append(conn)
        task_id = str(uuid.uuid4())
        calc_pi.apply_async(args=(task_id, 1), task_id=task_id, queue=queue, connection=conn, confirm_timeout=5)

    result = LayerResult()
    try:
        for name, publish in ((OURS, ours), (CELERYS, celerys)):
            publish()  # declare the queue, warm up
            result.rates[name], result.cpu_ms[name] = [], []
        for i in range(runs):
            for name, publish in ((OURS, ours), (CELERYS, celerys)) if i % 2 == 0 else ((CELERYS, celerys), (OURS, ours)):
                rate, cpu = _run(publish, threads, seconds)
                result.rates[name].append(rate)
                result.cpu_ms[name].append(cpu)
                log.info("publish layer run %d, %s: %.0f msg/s, %.3f ms CPU/msg", i + 1, name, rate, cpu)
    finally:
        publisher.close()
        try:
            conn, channel = publishing.connect(queue, broker_url)
            channel.queue_delete(queue)
            conn.close()
        finally:
            for conn in celery_conns:
                conn.release()
    return result


def _run(publish, threads: int, seconds: float) -> tuple[float, float]:  # noqa: ANN001
    counts = [0] * threads
    errors: list[BaseException] = []
    stop_at = time.monotonic() + seconds

    def loop(slot: int) -> None:
        try:
            while time.monotonic() < stop_at:
                publish()
                counts[slot] += 1
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            errors.append(exc)

    workers = [threading.Thread(target=loop, args=(i,)) for i in range(threads)]
    cpu_before, start = time.process_time(), time.monotonic()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu_before
    if errors:
        raise RuntimeError(f"a publish failed: {errors[0]!r}")
    done = sum(counts)
    return done / elapsed, 1000 * cpu / max(done, 1)
