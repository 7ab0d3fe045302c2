"""The publishing layer alone: the Thrift server's aio-pika TaskPublisher beside Celery's apply_async.

Both publish the same calc_pi message with publisher confirms to one private queue on the same
RabbitMQ for `seconds` per run, `concurrency` publishes in flight, and the runs alternate (AB, BA,
AB, ...), so that a noisy neighbour hits both alike:

* aio-pika's TaskPublisher (tserver/publishing.py): `concurrency` coroutines on one uvloop event
  loop, as in the Thrift server; the loop runs in a thread of its own for the whole comparison (its
  connection keeps its heartbeats between runs);
* Celery's apply_async (the worker's app, confirm_publish on): `concurrency` threads, a kombu
  connection each, the baseline.

CPU is this process's user + system time per confirmed message, every thread included. The queue
is purged between runs, outside the timed window, and deleted afterwards. `python -m bench.publishing
--help` runs it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import logging
import os
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

AIO_PIKA = "aio-pika TaskPublisher, coroutines on uvloop"
CELERYS = "Celery apply_async, threads (baseline)"


@dataclass
class LayerResult:
    rates: dict[str, list[float]] = field(default_factory=dict)  # confirmed messages per second, per run
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # CPU ms per message, per run


def publish_side_by_side(broker_url: str, concurrency: int, seconds: float, runs: int) -> LayerResult:
    """`runs` runs of each variant, alternating; raises if any publish fails."""
    import uvloop

    from tserver.publishing import TaskPublisher
    from worker.app import app
    from worker.tasks import calc_pi

    queue = f"bench-publish-{uuid.uuid4().hex[:12]}"
    # A kombu connection is not thread-safe: each thread gets its own, as from Celery's pool.
    local = threading.local()
    celery_conns: list[Any] = []
    loop = uvloop.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True)
    loop_thread.start()
    aio = TaskPublisher(broker_url, queue, timeout=5, retries=0)

    def celerys() -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = app.connection_for_write(broker_url)
            celery_conns.append(conn)
        task_id = str(uuid.uuid4())
        calc_pi.apply_async(args=(task_id, 1), task_id=task_id, queue=queue, connection=conn, confirm_timeout=5)

    async def aio_pika() -> None:
        await aio.publish_calc_pi(str(uuid.uuid4()), 1)

    variants: dict[str, Callable[[], tuple[float, float]]] = {
        AIO_PIKA: functools.partial(_run_coroutines, loop, aio_pika, concurrency, seconds),
        CELERYS: functools.partial(_run_threads, celerys, concurrency, seconds),
    }
    warm_ups: dict[str, Callable[[], object]] = {AIO_PIKA: lambda: _on(loop, aio_pika()), CELERYS: celerys}
    names = list(variants)
    result = LayerResult()
    try:
        for name in names:
            warm_ups[name]()  # declare the queue, open the connections
            result.rates[name], result.cpu_ms[name] = [], []
        _queue_op(broker_url, queue, "purge")
        for i in range(runs):
            for name in names if i % 2 == 0 else names[::-1]:
                rate, cpu = variants[name]()
                _queue_op(broker_url, queue, "purge")
                result.rates[name].append(rate)
                result.cpu_ms[name].append(cpu)
                log.info("publish layer run %d, %s: %.0f msg/s, %.3f ms CPU/msg", i + 1, name, rate, cpu)
    finally:
        _on(loop, aio.close())
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        try:
            _queue_op(broker_url, queue, "delete")
        finally:
            for conn in celery_conns:
                conn.release()
    return result


def _on(loop: asyncio.AbstractEventLoop, coro: Awaitable[object]) -> object:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(30)  # type: ignore[arg-type] - run_coroutine_threadsafe wants a Coroutine; aio-pika's calls are typed Awaitable


def _queue_op(broker_url: str, queue: str, op: str) -> None:
    from kombu import Connection, Queue

    with Connection(broker_url, connect_timeout=5) as conn:
        getattr(Queue(queue, channel=conn.channel()), op)()


def _run_threads(publish: Callable[[], None], threads: int, seconds: float) -> tuple[float, float]:
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


def _run_coroutines(
    loop: asyncio.AbstractEventLoop, publish: Callable[[], Awaitable[None]], concurrency: int, seconds: float
) -> tuple[float, float]:
    """`concurrency` coroutines on `loop`, each publishing one message after the other."""

    async def run() -> int:
        stop_at = time.monotonic() + seconds

        async def one() -> int:
            count = 0
            while time.monotonic() < stop_at:
                await publish()
                count += 1
            return count

        return sum(await asyncio.gather(*(one() for _ in range(concurrency))))

    cpu_before, start = time.process_time(), time.monotonic()
    future = asyncio.run_coroutine_threadsafe(run(), loop)
    done = future.result(seconds + 60)  # a failed publish is raised here
    elapsed, cpu = time.monotonic() - start, time.process_time() - cpu_before
    return done / elapsed, 1000 * cpu / max(done, 1)


def main(argv: list[str] | None = None) -> None:
    """Print the comparison as a table: median (and every run) of each variant."""
    from importlib.metadata import version

    from bench import machine

    parser = argparse.ArgumentParser(prog="python -m bench.publishing", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--concurrency", type=int, default=10, help="publishes in flight (coroutines / threads)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(levelname)s %(name)s: %(message)s")
    result = publish_side_by_side(args.broker, args.concurrency, args.seconds, args.runs)
    print(
        f"\n{machine.cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
        f"aio-pika {version('aio-pika')}, aiormq {version('aiormq')}, celery {version('celery')}, "
        f"uvloop {version('uvloop')}"
    )
    print(
        f"{args.concurrency} publishes in flight, {args.runs} runs of {args.seconds:g} s each, alternating; "
        "medians (every run in brackets)\n"
    )
    print("| variant | msg/s | CPU ms per message |\n|---|---:|---:|")
    for name, rates in result.rates.items():
        cpu = result.cpu_ms[name]
        print(
            f"| {name} | {statistics.median(rates):,.0f} ({', '.join(f'{r:,.0f}' for r in rates)}) "
            f"| {statistics.median(cpu):.3f} ({', '.join(f'{c:.3f}' for c in cpu)}) |"
        )


if __name__ == "__main__":
    main()
