"""The gateway's Prometheus metrics (docs/observability.md, "Gateway"), served at GET /metrics.

    http_requests_total{handler,method,status}              requests answered, by route template
    http_request_duration_seconds{handler,method}           their latency (to the response's last byte)
    http_event_streams_open                                 event streams open now
    thrift_client_calls_total{method,outcome}               Thrift calls by IDL method and outcome
    thrift_client_call_duration_seconds{method}             their latency, retries on other replicas included
    thrift_client_connections_in_use{server}                pooled connections lent to calls now
    thrift_client_connections_idle{server}                  pooled connections waiting
    process_*, python_*                                     prometheus_client's own collectors

Every label is bounded: `handler` is a route template or `none` (no route matched: never the raw path),
`method` an HTTP method from a fixed list or `other`, `status` an HTTP status code, `server` a configured
Thrift server address, `outcome` one of OUTCOMES.

Each app has a registry of its own: the tests build many apps in one process, and the global registry
would refuse a second metric of the same name. The hot path touches prebound label children, kept in
a dict per label tuple, so a request costs two dict lookups and a counter and histogram update, not a
`labels()` call each. The gauges cost nothing per request: they are read from the event-stream hub and
the Thrift pools when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

#: What became of a Thrift call: the label `outcome` of thrift_client_calls_total.
OUTCOMES = ("ok", "idl_error", "failed", "unavailable", "dropped", "timeout", "cancelled")
#: Route label of a request no route matched (a 404 of an unknown path).
UNMATCHED = "none"
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "CONNECT"})
# Status reads take ~0.1 ms in the gateway and a few ms through Thrift; starts wait for RabbitMQ's
# confirm; nothing may take more than THRIFT_TIMEOUT (4.5 s) but an event stream, which lasts minutes.
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0)
THRIFT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class PoolView(Protocol):
    """What the gauges read of one Thrift connection pool (app.thrift_client.ThriftPool)."""

    host: str
    port: int
    in_use: int

    @property
    def idle(self) -> int: ...


class GatewayMetrics:
    """The metrics of one gateway app, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("http_requests_total", "HTTP requests answered, by route template, method and status",
                                ("handler", "method", "status"), registry=self.registry)
        self.request_seconds = Histogram("http_request_duration_seconds",
                                         "Seconds from a request's arrival to its response's last byte",
                                         ("handler", "method"), buckets=HTTP_BUCKETS, registry=self.registry)
        self.calls = Counter("thrift_client_calls_total", "Calls to the Thrift server, by IDL method and outcome",
                             ("method", "outcome"), registry=self.registry)
        self.call_seconds = Histogram("thrift_client_call_duration_seconds",
                                      "Seconds a call to the Thrift server took (retries on other replicas included)",
                                      ("method",), buckets=THRIFT_BUCKETS, registry=self.registry)
        # The process's CPU, memory, open files and the interpreter's GC: cheap, read when scraped.
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._http: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}
        self._calls: dict[tuple[str, str], tuple[Counter, Histogram]] = {}

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (`handler`: its route template or UNMATCHED)."""
        key = (handler, method, status)
        children = self._http.get(key)
        if children is None:
            label = method if method in HTTP_METHODS else "other"
            children = self._http[key] = (self.requests.labels(handler, label, str(status)),
                                          self.request_seconds.labels(handler, label))
        children[0].inc()
        children[1].observe(seconds)

    def observe_call(self, method: str, outcome: str, seconds: float) -> None:
        """Count one Thrift call of the IDL method `method`; `outcome` is one of OUTCOMES."""
        key = (method, outcome)
        children = self._calls.get(key)
        if children is None:
            children = self._calls[key] = (self.calls.labels(method, outcome), self.call_seconds.labels(method))
        children[0].inc()
        children[1].observe(seconds)

    def watch(self, streams: Callable[[], int], pools: Callable[[], Iterable[PoolView]]) -> None:
        """Serve the gauges read at scrape time: open event streams, and each pool's connections."""
        self.registry.register(_Live(streams, pools))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Live(Collector):
    """Gauges computed when scraped, from objects the app owns (nothing to update per request)."""

    def __init__(self, streams: Callable[[], int], pools: Callable[[], Iterable[PoolView]]) -> None:
        self.streams = streams
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("http_event_streams_open", "Server-sent event streams open now", value=self.streams())
        in_use = GaugeMetricFamily("thrift_client_connections_in_use",
                                   "Pooled connections to a Thrift server lent to calls now", labels=("server",))
        idle = GaugeMetricFamily("thrift_client_connections_idle",
                                 "Pooled connections to a Thrift server open and waiting", labels=("server",))
        for pool in self.pools():
            address = f"{pool.host}:{pool.port}"
            in_use.add_metric((address,), pool.in_use)
            idle.add_metric((address,), pool.idle)
        yield in_use
        yield idle

    def describe(self) -> Iterable[Metric]:
        # Described without calling collect(): the hub and the pools exist only while the app runs.
        return [GaugeMetricFamily("http_event_streams_open", ""),
                GaugeMetricFamily("thrift_client_connections_in_use", "", labels=("server",)),
                GaugeMetricFamily("thrift_client_connections_idle", "", labels=("server",))]
