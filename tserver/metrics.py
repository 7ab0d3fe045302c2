"""The Thrift server's Prometheus metrics (docs/observability.md, "Thrift server").

    thrift_server_calls_total{method,outcome}         calls by IDL method and outcome (runtime/observer.py)
    thrift_server_call_duration_seconds{method}       their latency, from decoding to the encoded reply
    publishes_total{outcome}                          publishes to RabbitMQ by outcome (one per attempt)
    tasks{status}                                     tasks in the state store by status, read when scraped
    process_*, python_*                               prometheus_client's own collectors

Every label is bounded: `method` is an IDL method or `unknown`, `outcome` and `status` come from fixed
lists, and every series of the first three exists (at 0) from the start. The hot path touches prebound
label children kept in a dict, so a call costs a dict lookup and a counter and histogram update.

Served by prometheus_client's own HTTP server in a thread of its own (`serve`), not on the event loop:
its HTTP handling is the library's (nothing of ours parses a request), and rendering the text, a
millisecond or so, never holds up a call. The one thing that needs the loop, the task counts (the
state store's clients live on it), is asked for there with run_coroutine_threadsafe and a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from state.records import STATUSES
from tserver.publishing import PUBLISH_OUTCOMES
from tserver.runtime.observer import DECODE_ERROR, OUTCOMES, UNKNOWN

log = logging.getLogger(__name__)

# A status read answers in ~0.1 ms, a start waits for RabbitMQ's confirm (ms), nothing may take longer
# than the gateway's THRIFT_TIMEOUT (4.5 s) but a cancel waiting for its worker. The gateway's buckets.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
# How long a scrape waits for the task counts before it leaves them out.
COUNTS_TIMEOUT = 2.0

TaskCounts = Callable[[], Awaitable[dict[str, int]]]


class ServerMetrics:
    """The metrics of one Thrift server, in a registry of its own (tests make several in one process)."""

    def __init__(self, methods: Iterable[str]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.calls = Counter(
            "thrift_server_calls_total",
            "Thrift calls answered, by IDL method and outcome",
            ("method", "outcome"),
            registry=self.registry,
        )
        self.call_seconds = Histogram(
            "thrift_server_call_duration_seconds",
            "Seconds from a call's decoding to its encoded reply, by IDL method",
            ("method",),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.publishes = Counter(
            "publishes_total",
            "Messages published to RabbitMQ, by outcome (one per attempt)",
            ("outcome",),
            registry=self.registry,
        )
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        # Every series from the start, so that rates and alerts see a 0 rather than nothing.
        self._calls = {
            (method, outcome): (self.calls.labels(method, outcome), self.call_seconds.labels(method))
            for method in (*methods, UNKNOWN)
            for outcome in OUTCOMES
        }
        self._publishes = {outcome: self.publishes.labels(outcome) for outcome in PUBLISH_OUTCOMES}
        self._rejected = self.calls.labels(UNKNOWN, DECODE_ERROR)
        self._counts: _TaskCounts | None = None

    def observe_call(self, method: str, outcome: str, seconds: float) -> None:
        """One call of `method` (an IDL name or UNKNOWN) ended with `outcome` after `seconds`."""
        counter, histogram = self._calls[method, outcome]
        counter.inc()
        histogram.observe(seconds)

    def rejected(self) -> None:
        """Bytes that named no method were refused (their connection closed)."""
        self._rejected.inc()

    def published(self, outcome: str) -> None:
        """One publish attempt ended with `outcome` (one of PUBLISH_OUTCOMES)."""
        self._publishes[outcome].inc()

    def count_tasks(self, counts: TaskCounts) -> None:
        """Serve `tasks{status}` from `counts()` (the state store's), awaited on the loop `attach` names."""
        self._counts = _TaskCounts(counts)
        self.registry.register(self._counts)

    def attach(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """The loop the task counts are asked for on (None: the server has stopped)."""
        if self._counts is not None:
            self._counts.loop = loop

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _TaskCounts(Collector):
    """tasks{status}, read from the state store at each scrape; left out (with a log line) when it cannot
    answer, so that the scrape itself never fails."""

    def __init__(self, counts: TaskCounts) -> None:
        self.counts = counts
        self.loop: asyncio.AbstractEventLoop | None = None

    def collect(self) -> Iterator[Metric]:
        counts = self._ask()
        if counts is None:
            return
        gauge = GaugeMetricFamily("tasks", "Tasks in the state store, by status", labels=("status",))
        for status in STATUSES:
            gauge.add_metric((status,), counts.get(status, 0))
        yield gauge

    def describe(self) -> Iterable[Metric]:
        # Described without asking the store: the registry describes collectors when they are registered.
        return [GaugeMetricFamily("tasks", "", labels=("status",))]

    def _ask(self) -> dict[str, int] | None:
        loop = self.loop
        if loop is None or loop.is_closed():
            return None  # before the server started, or after it stopped: nothing to ask
        if _running_loop() is loop:  # a scrape on the loop itself would wait for itself
            log.warning("tasks by status left out of the metrics: asked for on the server's own loop")
            return None
        future = asyncio.run_coroutine_threadsafe(_call(self.counts), loop)
        try:
            return future.result(COUNTS_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - whatever the store raised: the gauge is left out, not the scrape
            future.cancel()
            timed_out = isinstance(exc, TimeoutError)
            detail = f"no answer within {COUNTS_TIMEOUT:g} s" if timed_out else str(exc) or repr(exc)
            log.warning("tasks by status left out of the metrics: the state store did not answer: %s", detail)
            return None


async def _call(counts: TaskCounts) -> dict[str, int]:
    return await counts()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def serve(metrics: ServerMetrics, host: str, port: int) -> tuple[WSGIServer, threading.Thread]:
    """Listen for scrapes on host:port (any path answers; /metrics is the one to use) in a thread of its
    own; a port already taken stops the program with a one-line message."""
    try:
        return start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise SystemExit(
            f"tserver: cannot serve metrics on {host}:{port}: {exc.strerror or exc} (set "
            "TSERVER_METRICS_PORT to a free port, or METRICS_ENABLED=false)"
        ) from None
