"""The publishing layer alone: the product's publishers beside Celery's apply_async.

Every variant publishes the same calc_pi message with publisher confirms to one private queue on
the same RabbitMQ for `seconds` per run, and the runs alternate, the order rotated run by run
(ABCD, BCDA, CDAB, ...), so that a noisy neighbour hits every variant alike:

* ConfirmedPublisher (worker/publisher.py), `threads` threads calling its blocking `publish`;
* Celery's apply_async (confirm_publish on), `threads` threads, a kombu connection each: the baseline;
* ConfirmedPublisher driven as the Thrift server drives it: `concurrency` coroutines on one uvloop
  event loop, each handing a message over (`submit`) and awaiting a future the publisher's thread
  settles through call_soon_threadsafe (worker/queue.py's enqueue_calc_pi);
* aio-pika's TaskPublisher (tserver/publishing.py), `concurrency` coroutines on the same loop.

The event loop runs in a thread of its own for the whole comparison, as in the Thrift server (its
connections keep their heartbeats between runs). CPU is this process's user + system time per
confirmed message, every thread included. The queue is purged between runs, outside the timed
window, and deleted afterwards. `python -m bench.publishing --help` runs it alone.
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

log = logging.getLogger(__name__)

OURS = "ConfirmedPublisher"
CELERYS = "Celery apply_async (baseline)"
OURS_ON_LOOP = "ConfirmedPublisher, coroutines on uvloop (as the Thrift server drives it)"
AIO_PIKA = "aio-pika TaskPublisher, coroutines on uvloop"


@dataclass
class LayerResult:
    rates: dict[str, list[float]] = field(default_factory=dict)  # confirmed messages per second, per run
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)  # CPU ms per message, per run


def publish_side_by_side(broker_url: str, threads: int, seconds: float, runs: int,
                         concurrency: int | None = None) -> LayerResult:
    """`runs` runs of each variant, alternating with the order rotated; raises if any publish fails.
    `concurrency` (coroutines of the loop-driven variants) defaults to `threads`."""
    import uvloop

    from tserver.publishing import TaskPublisher
    from worker import queue as publishing
    from worker.app import app
    from worker.publisher import ConfirmedPublisher
    from worker.tasks import calc_pi

    concurrency = concurrency or threads
    queue = f"bench-publish-{uuid.uuid4().hex[:12]}"
    publisher = ConfirmedPublisher(functools.partial(publishing.connect, queue, broker_url))
    # A kombu connection is not thread-safe: each thread gets its own, as from Celery's pool.
    local = threading.local()
    celery_conns: list = []
    loop = uvloop.new_event_loop()
    loop_thread = threading.Thread(target=loop.run_forever, name="bench-loop", daemon=True)
    loop_thread.start()
    aio = TaskPublisher(broker_url, queue, timeout=5, retries=0)

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

    async def ours_on_loop() -> None:
        # worker.queue.enqueue_calc_pi's path, on this queue instead of CELERY_QUEUE.
        running = asyncio.get_running_loop()
        confirmed: asyncio.Future[None] = running.create_future()

        def on_done(error: Exception | None) -> None:
            running.call_soon_threadsafe(publishing._settle, confirmed, error)

        job = publisher.submit(publishing.task_message(str(uuid.uuid4()), 1), exchange="", routing_key=queue,
                               on_done=on_done)
        try:
            async with asyncio.timeout(5):
                await confirmed
        except TimeoutError:
            job.abandoned = True
            raise

    async def aio_pika() -> None:
        await aio.publish_calc_pi(str(uuid.uuid4()), 1)

    variants: dict[str, Callable[[], float]] = {
        OURS: functools.partial(_run_threads, ours, threads, seconds),
        CELERYS: functools.partial(_run_threads, celerys, threads, seconds),
        OURS_ON_LOOP: functools.partial(_run_coroutines, loop, ours_on_loop, concurrency, seconds),
        AIO_PIKA: functools.partial(_run_coroutines, loop, aio_pika, concurrency, seconds),
    }
    warm_ups: dict[str, Callable[[], object]] = {
        OURS: ours, CELERYS: celerys,
        OURS_ON_LOOP: lambda: _on(loop, ours_on_loop()), AIO_PIKA: lambda: _on(loop, aio_pika()),
    }
    names = list(variants)
    result = LayerResult()
    try:
        for name in names:
            warm_ups[name]()  # declare the queue, open the connections
            result.rates[name], result.cpu_ms[name] = [], []
        _purge(broker_url, queue)
        for i in range(runs):
            for name in names[i % len(names):] + names[:i % len(names)]:
                rate, cpu = variants[name]()
                _purge(broker_url, queue)
                result.rates[name].append(rate)
                result.cpu_ms[name].append(cpu)
                log.info("publish layer run %d, %s: %.0f msg/s, %.3f ms CPU/msg", i + 1, name, rate, cpu)
    finally:
        publisher.close()
        _on(loop, aio.close())
        loop.call_soon_threadsafe(loop.stop)
        loop_thread.join(5)
        try:
            conn, channel = publishing.connect(queue, broker_url)
            channel.queue_delete(queue)
            conn.close()
        finally:
            for conn in celery_conns:
                conn.release()
    return result


def _on(loop: asyncio.AbstractEventLoop, coro: Awaitable[object]) -> object:
    return asyncio.run_coroutine_threadsafe(coro, loop).result(30)  # type: ignore[arg-type]


def _purge(broker_url: str, queue: str) -> None:
    from worker import queue as publishing

    conn, channel = publishing.connect(queue, broker_url)
    try:
        channel.queue_purge(queue)
    finally:
        conn.close()


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


def _run_coroutines(loop: asyncio.AbstractEventLoop, publish: Callable[[], Awaitable[None]], concurrency: int,
                    seconds: float) -> tuple[float, float]:
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
    from bench import machine

    parser = argparse.ArgumentParser(prog="python -m bench.publishing", description=__doc__.splitlines()[0])
    parser.add_argument("--broker", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--threads", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=None, help="coroutines (default: --threads)")
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench %(levelname)s %(name)s: %(message)s")
    result = publish_side_by_side(args.broker, args.threads, args.seconds, args.runs, args.concurrency)
    from importlib.metadata import version

    print(f"\n{machine.cpu_model()}, {os.cpu_count()} cores; Python {platform.python_version()}, "
          f"aio-pika {version('aio-pika')}, aiormq {version('aiormq')}, py-amqp {version('amqp')}, "
          f"celery {version('celery')}, uvloop {version('uvloop')}")
    print(f"{args.threads} threads / {args.concurrency or args.threads} coroutines, {args.runs} runs of "
          f"{args.seconds:g} s each, order rotated run by run; medians (every run in brackets)\n")
    print("| variant | msg/s | CPU ms per message |\n|---|---:|---:|")
    for name, rates in result.rates.items():
        cpu = result.cpu_ms[name]
        print(f"| {name} | {statistics.median(rates):,.0f} ({', '.join(f'{r:,.0f}' for r in rates)}) "
              f"| {statistics.median(cpu):.3f} ({', '.join(f'{c:.3f}' for c in cpu)}) |")


if __name__ == "__main__":
    main()
