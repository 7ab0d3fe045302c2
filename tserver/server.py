"""Server wiring: builds the handler from the settings and serves it (`python -m tserver`)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from RPC import RPCcelery
from state.backends import describe, disk_path, open_catalog
from state.config import StateSettings, load
from tserver.config import ServerSettings
from tserver.handler import RPCceleryHandler
from tserver.hostinfo import prime_cpu_percent
from tserver.housekeeping import Housekeeper
from tserver.publish_guard import PublishGuard
from tserver.publishing import TaskPublisher
from tserver.runtime import ServerLimits, run

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Parse --port-file, read the settings and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tserver", description=__doc__)
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s tserver %(levelname)s %(name)s: %(message)s")
    settings = load(ServerSettings)
    state_settings = load(StateSettings)
    catalog = open_catalog(state_settings, ttl=settings.RESULT_TTL, threads=settings.TSERVER_WORKERS)
    publisher = TaskPublisher(settings.BROKER_URL, settings.CELERY_QUEUE, timeout=settings.PUBLISH_TIMEOUT,
                              retries=settings.PUBLISH_RETRIES,
                              queue_arguments={"x-queue-type": "quorum"} if settings.CELERY_QUEUE_TYPE == "quorum" else None)
    # Each attempt waits at most PUBLISH_TIMEOUT. Under the gateway's THRIFT_TIMEOUT (4.5 s), so the
    # server knows it failed before the user does.
    deadline = settings.PUBLISH_TIMEOUT * (1 + settings.PUBLISH_RETRIES) + 0.5
    handler = RPCceleryHandler(catalog, publisher.publish_calc_pi, settings.MAX_DECIMAL,
                               stalled_after=settings.STALLED_AFTER, guard=PublishGuard(deadline=deadline),
                               disk_path=disk_path(state_settings))

    @asynccontextmanager
    async def on_the_loop() -> AsyncIterator[None]:
        """What runs beside the server on its loop: housekeeping; closed connections at the end."""
        housekeeper = Housekeeper(catalog, settings.HOUSEKEEPING_INTERVAL)
        try:
            # One round before serving: for the files backend it builds the task index.
            await catalog.housekeep()
            housekeeper.start()
            yield
        finally:
            await housekeeper.stop()
            await publisher.close()
            await catalog.close()

    prime_cpu_percent()
    limits = ServerLimits(idle_timeout=settings.TSERVER_IDLE_TIMEOUT, max_connections=settings.TSERVER_MAX_CONNECTIONS)
    log.info("serving RPCcelery on %s:%s (state: %s, queue %s)", settings.TSERVER_HOST, settings.TSERVER_PORT,
             describe(state_settings), settings.CELERY_QUEUE)
    run(RPCcelery.Processor(handler), settings.TSERVER_HOST, settings.TSERVER_PORT, limits,
        port_file=args.port_file, resources=on_the_loop)
