"""Server wiring: builds the handler from the settings and serves it (`python -m tserver`)."""

from __future__ import annotations

import argparse
import logging

from RPC import RPCcelery
from tserver.config import load_settings
from tserver.handler import RPCceleryHandler
from tserver.hostinfo import prime_cpu_percent
from tserver.index import TaskIndex
from tserver.maintenance import Housekeeper
from tserver.publish_guard import PublishGuard
from tserver.transport import ServerLimits, run
from worker.state import StateStore

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Parse --port-file, read the settings and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tserver", description=__doc__)
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tserver %(levelname)s %(name)s: %(message)s")

    settings = load_settings()
    # Importing the queue builds the Celery app, which reads and checks the shared settings.
    from worker.queue import close_publisher, enqueue_calc_pi, settings as worker_settings

    store = StateStore(worker_settings.STATE_DIR)
    index = TaskIndex(store)
    housekeeper = Housekeeper(index, settings.HOUSEKEEPING_INTERVAL, settings.RESULT_TTL)
    # One round before serving: its rescan is the first, so it compares the whole folder and
    # builds the index (a second walk of 100,000 names would cost ~100 ms more).
    housekeeper.sweep()
    log.info("indexed %d tasks in %s", len(index), store.folder)
    housekeeper.start()
    # Each attempt waits at most PUBLISH_TIMEOUT. Under the gateway's THRIFT_TIMEOUT (4.5 s), so
    # the server knows it failed before the user does.
    publish_deadline = worker_settings.PUBLISH_TIMEOUT * (1 + worker_settings.PUBLISH_RETRIES) + 0.5
    handler = RPCceleryHandler(store, enqueue_calc_pi, worker_settings.MAX_DECIMAL,
                               stalled_after=settings.STALLED_AFTER, index=index,
                               guard=PublishGuard(deadline=publish_deadline))
    prime_cpu_percent()
    limits = ServerLimits(
        workers=settings.TSERVER_WORKERS,
        idle_timeout=settings.TSERVER_IDLE_TIMEOUT,
        max_connections=settings.TSERVER_MAX_CONNECTIONS,
        # One small state-file read each: cheaper on the loop than a hop to a pool thread. Calls
        # that can wait on the broker, or read many files, stay in the pool.
        inline_methods=frozenset({"getTaskStatus", "getHostStatus"}),
        # The starts (queueCalcPi, startCalcPi) are coroutines that wait for RabbitMQ on the loop.
        # cancelTask waits for a worker: it gets threads of its own, so reads never queue behind it.
        slow_methods=frozenset({"cancelTask"}),
    )
    log.info("serving RPCcelery on %s:%s (state in %s, queue %s)", settings.TSERVER_HOST,
             settings.TSERVER_PORT, worker_settings.STATE_DIR, worker_settings.CELERY_QUEUE)
    try:
        run(RPCcelery.Processor(handler), settings.TSERVER_HOST, settings.TSERVER_PORT, limits,
            port_file=args.port_file)
    finally:
        housekeeper.stop()
        close_publisher()
