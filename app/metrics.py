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
would refuse a second metric of the same name. The counters and histograms of requests and calls are
kept by `Observations`, plain numbers updated without a lock (every update and every scrape runs on the
event loop's one thread) and turned into metric families when scraped: measured side by side, an
answered request cost 7-9 us more with prometheus_client's Counter and Histogram (a lock taken per
value, a walk of the buckets) and 3-5 us more this way. The gauges cost nothing per request: they are
read from the event-stream hub and the Thrift pools when scraped.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
)
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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
        self.requests = Observations(
            "http_requests_total",
            "HTTP requests answered, by route template, method and status",
            "http_request_duration_seconds",
            "Seconds from a request's arrival to its response's last byte",
            ("handler", "method"),
            "status",
            HTTP_BUCKETS,
        )
        self.calls = Observations(
            "thrift_client_calls_total",
            "Calls to the Thrift server, by IDL method and outcome",
            "thrift_client_call_duration_seconds",
            "Seconds a call to the Thrift server took (retries on other replicas included)",
            ("method",),
            "outcome",
            THRIFT_BUCKETS,
        )
        # The process's CPU, memory, open files and the interpreter's GC: cheap, read when scraped.
        for collector in (self.requests, self.calls, PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)

    def observe_request(self, handler: str, method: str, status: int, seconds: float) -> None:
        """Count one answered request (`handler`: its route template or UNMATCHED)."""
        # Normalised before it is a key: a client's made-up methods must not grow the table either.
        self.requests.observe((handler, method if method in HTTP_METHODS else "other"), status, seconds)

    def observe_call(self, method: str, outcome: str, seconds: float) -> None:
        """Count one Thrift call of the IDL method `method`; `outcome` is one of OUTCOMES."""
        self.calls.observe((method,), outcome, seconds)

    def watch(self, streams: Callable[[], int], pools: Callable[[], Iterable[PoolView]]) -> None:
        """Serve the gauges read at scrape time: open event streams, and each pool's connections."""
        self.registry.register(_Live(streams, pools))

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Series:
    """What one label set has seen: counts by the last label's value, a histogram's buckets and sum."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts: dict[str | int, int] = {}
        self.buckets = [0] * buckets  # per bucket, not cumulative; the last one is +Inf
        self.sum = 0.0


class Observations(Collector):
    """A counter by `labels` and `last`, and a histogram of seconds by `labels`.

    Not thread-safe, on purpose: only the event loop's thread observes and scrapes.
    """

    def __init__(
        self,
        counter: str,
        counter_help: str,
        histogram: str,
        histogram_help: str,
        labels: tuple[str, ...],
        last: str,
        buckets: tuple[float, ...],
    ) -> None:
        self.counter, self.counter_help = counter, counter_help
        self.histogram, self.histogram_help = histogram, histogram_help
        self.labels, self.last, self.bounds = labels, last, buckets
        self._series: dict[tuple[str, ...], _Series] = {}

    def observe(self, key: tuple[str, ...], last: str | int, seconds: float) -> None:
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(len(self.bounds) + 1)
        series.counts[last] = series.counts.get(last, 0) + 1
        series.buckets[bisect_left(self.bounds, seconds)] += 1  # the first bound >= seconds: `le`
        series.sum += seconds

    def collect(self) -> Iterator[Metric]:
        counter = CounterMetricFamily(self.counter, self.counter_help, labels=(*self.labels, self.last))
        histogram = HistogramMetricFamily(self.histogram, self.histogram_help, labels=self.labels)
        for key, series in self._series.items():
            for last, count in series.counts.items():
                counter.add_metric((*key, str(last)), count)
            cumulative = list(accumulate(series.buckets))
            les = [*map(floatToGoString, self.bounds), "+Inf"]
            histogram.add_metric(key, list(zip(les, cumulative, strict=True)), series.sum)
        yield counter
        yield histogram

    def describe(self) -> Iterable[Metric]:
        return [
            CounterMetricFamily(self.counter, "", labels=(*self.labels, self.last)),
            HistogramMetricFamily(self.histogram, "", labels=self.labels),
        ]


class _Live(Collector):
    """Gauges computed when scraped, from objects the app owns (nothing to update per request)."""

    def __init__(self, streams: Callable[[], int], pools: Callable[[], Iterable[PoolView]]) -> None:
        self.streams = streams
        self.pools = pools

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("http_event_streams_open", "Server-sent event streams open now", value=self.streams())
        in_use = GaugeMetricFamily(
            "thrift_client_connections_in_use",
            "Pooled connections to a Thrift server lent to calls now",
            labels=("server",),
        )
        idle = GaugeMetricFamily(
            "thrift_client_connections_idle",
            "Pooled connections to a Thrift server open and waiting",
            labels=("server",),
        )
        for pool in self.pools():
            address = f"{pool.host}:{pool.port}"
            in_use.add_metric((address,), pool.in_use)
            idle.add_metric((address,), pool.idle)
        yield in_use
        yield idle

    def describe(self) -> Iterable[Metric]:
        # Described without calling collect(): the hub and the pools exist only while the app runs.
        return [
            GaugeMetricFamily("http_event_streams_open", ""),
            GaugeMetricFamily("thrift_client_connections_in_use", "", labels=("server",)),
            GaugeMetricFamily("thrift_client_connections_idle", "", labels=("server",)),
        ]
