"""Server wiring: builds the handler from the settings and serves it (`python -m tserver`), with its
logs, metrics and traces as the settings say (docs/observability.md)."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from RPC import RPCcelery
from state.backends import describe, disk_path, open_catalog
from state.config import StateSettings, load
from state.errors import StorageError
from tserver import logs, metrics, tracing
from tserver.config import ServerSettings
from tserver.handler import RPCceleryHandler
from tserver.hostinfo import prime_cpu_percent
from tserver.housekeeping import Housekeeper
from tserver.observed import ObservedCalls
from tserver.publish_guard import PublishGuard
from tserver.publishing import TaskPublisher
from tserver.runtime import ServerLimits, run

log = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> None:
    """Parse --port-file, read the settings and serve until SIGTERM."""
    parser = argparse.ArgumentParser(prog="python -m tserver", description=__doc__)
    parser.add_argument("--port-file", help="write the bound port to this file once listening")
    args = parser.parse_args(argv)
    settings = load(ServerSettings)
    state_settings = load(StateSettings)
    logs.configure(settings.LOG_FORMAT, level=settings.LOG_LEVEL)
    counted = metrics.ServerMetrics(idl_methods()) if settings.METRICS_ENABLED else None
    # Before anything else starts: a metrics port already taken stops the program with one line.
    listener = metrics.serve(counted, settings.TSERVER_HOST, settings.TSERVER_METRICS_PORT) if counted else None
    provider = tracing.make_provider(settings.trace_exporters) if settings.trace_exporters else None
    tracer = provider.get_tracer("tserver") if provider is not None else None
    catalog = open_catalog(state_settings, ttl=settings.RESULT_TTL, threads=settings.TSERVER_WORKERS)
    publisher = TaskPublisher(
        settings.BROKER_URL,
        settings.CELERY_QUEUE,
        timeout=settings.PUBLISH_TIMEOUT,
        retries=settings.PUBLISH_RETRIES,
        queue_arguments=_queue_arguments(settings),
        count=counted.published if counted else None,
        tracer=tracer,
    )
    # Each attempt waits at most PUBLISH_TIMEOUT. Under the gateway's THRIFT_TIMEOUT (4.5 s), so the
    # server knows it failed before the user does.
    deadline = settings.PUBLISH_TIMEOUT * (1 + settings.PUBLISH_RETRIES) + 0.5
    handler = RPCceleryHandler(
        catalog,
        publisher.publish_calc_pi,
        settings.MAX_DECIMAL,
        stalled_after=settings.STALLED_AFTER,
        guard=PublishGuard(deadline=deadline),
        disk_path=disk_path(state_settings),
    )
    if counted is not None:
        counted.count_tasks(catalog.counts)

    @asynccontextmanager
    async def on_the_loop() -> AsyncIterator[None]:
        """What runs beside the server on its loop: housekeeping; closed connections at the end."""
        housekeeper = Housekeeper(catalog, settings.HOUSEKEEPING_INTERVAL)
        try:
            # One round before serving: for the files backend it builds the task index. A store that
            # cannot answer yet (Redis still starting) must not stop the server: it answers 503 until
            # the store is back, and the next round catches up.
            try:
                await catalog.housekeep()
            except (OSError, StorageError) as exc:
                log.warning("first housekeeping round failed (the next one retries): %s", exc)
            housekeeper.start()
            if counted is not None:
                counted.attach(asyncio.get_running_loop())
            yield
        finally:
            if counted is not None:
                counted.attach(None)
            await housekeeper.stop()
            await publisher.close()
            await catalog.close()

    prime_cpu_percent()
    limits = ServerLimits(idle_timeout=settings.TSERVER_IDLE_TIMEOUT, max_connections=settings.TSERVER_MAX_CONNECTIONS)
    observer = ObservedCalls(metrics=counted, tracer=tracer) if counted or tracer else None
    log.info(
        "serving RPCcelery on %s:%s (state: %s, queue %s; metrics %s; tracing %s)",
        settings.TSERVER_HOST,
        settings.TSERVER_PORT,
        describe(state_settings),
        settings.CELERY_QUEUE,
        f"on port {listener[0].server_port}" if listener else "off",
        ", ".join(settings.trace_exporters) or "off",
    )
    try:
        run(
            RPCcelery.Processor(handler),
            settings.TSERVER_HOST,
            settings.TSERVER_PORT,
            limits,
            port_file=args.port_file,
            resources=on_the_loop,
            observer=observer,
        )
    finally:
        if listener is not None:
            listener[0].shutdown()
            listener[0].server_close()
        if provider is not None:
            provider.shutdown()  # the spans still buffered are exported


def idl_methods() -> list[str]:
    """The service's methods, as the IDL names them."""
    return [name for name, _ in inspect.getmembers(RPCcelery.Iface, inspect.isfunction)]


def _queue_arguments(settings: ServerSettings) -> dict[str, str] | None:
    # Declared as the workers declare it: RabbitMQ refuses a declaration that differs from the queue's.
    return {"x-queue-type": "quorum"} if settings.CELERY_QUEUE_TYPE == "quorum" else None
