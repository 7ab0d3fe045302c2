"""Server wiring: builds the handler from the settings and serves it (`python -m tserver`)."""

from __future__ import annotations

import argparse
import logging

from RPC import RPCcelery
from tserver.config import load_settings
from tserver.handler import RPCceleryHandler
from tserver.hostinfo import prime_cpu_percent
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
    from worker.queue import enqueue_calc_pi, settings as worker_settings

    handler = RPCceleryHandler(StateStore(worker_settings.STATE_DIR), enqueue_calc_pi, worker_settings.MAX_DECIMAL)
    prime_cpu_percent()
    limits = ServerLimits(
        workers=settings.TSERVER_WORKERS,
        idle_timeout=settings.TSERVER_IDLE_TIMEOUT,
        max_connections=settings.TSERVER_MAX_CONNECTIONS,
    )
    log.info("serving RPCcelery on %s:%s (state in %s, queue %s)", settings.TSERVER_HOST,
             settings.TSERVER_PORT, worker_settings.STATE_DIR, worker_settings.CELERY_QUEUE)
    run(RPCcelery.Processor(handler), settings.TSERVER_HOST, settings.TSERVER_PORT, limits, port_file=args.port_file)
