"""Settings of the Thrift server, read once from the environment (documented in README.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from RPC.constants import DEFAULT_MAX_DECIMAL, MAX_SUPPORTED_DECIMAL, MIN_DECIMAL


class ServerSettings(BaseSettings):
    """Where the Thrift server listens, where it publishes, and how much it lets one client use."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    TSERVER_HOST: str = Field(default="127.0.0.1", min_length=1)
    TSERVER_PORT: int = Field(default=9000, ge=0, le=65535)
    # Threads for the state store's file I/O (idle connections and waiting calls hold none).
    TSERVER_WORKERS: int = Field(default=8, ge=1, le=256)
    TSERVER_IDLE_TIMEOUT: float = Field(default=60.0, gt=0, le=3600)
    TSERVER_MAX_CONNECTIONS: int = Field(default=2000, ge=1, le=100_000)
    BROKER_URL: str = Field(default="amqp://guest:guest@localhost:5672//", pattern=r"^(amqps?|pyamqp)://")
    CELERY_QUEUE: str = Field(default="pi", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    # quorum: replicated over a RabbitMQ cluster's nodes (the queue must be declared so from the start).
    CELERY_QUEUE_TYPE: Literal["classic", "quorum"] = "classic"
    MAX_DECIMAL: int = Field(default=DEFAULT_MAX_DECIMAL, ge=MIN_DECIMAL, le=MAX_SUPPORTED_DECIMAL)
    # Publishing must give up quickly when the broker is gone, so the caller can answer 503 in time.
    PUBLISH_TIMEOUT: float = Field(default=1.5, gt=0, le=30)
    PUBLISH_RETRIES: int = Field(default=1, ge=0, le=10)
    # Ended tasks older than this many seconds are removed (0 keeps them forever). 7 days.
    RESULT_TTL: float = Field(default=7 * 24 * 3600, ge=0)
    # How often the state store is looked after: files added or removed by others are picked up,
    # expired results removed.
    HOUSEKEEPING_INTERVAL: float = Field(default=10.0, gt=0, le=3600)
    # A running task whose worker has not reported for this long is shown as stalled.
    STALLED_AFTER: float = Field(default=30.0, gt=0, le=86400)
    # docs/observability.md. false: no metrics listener and no counting at all (the benchmarks' baseline).
    METRICS_ENABLED: bool = True
    # Prometheus' text format at http://TSERVER_HOST:TSERVER_METRICS_PORT/metrics (0: any free port).
    TSERVER_METRICS_PORT: int = Field(default=9100, ge=0, le=65535)
    # text, or json: one JSON object per line (tserver/logs.py).
    LOG_FORMAT: Literal["text", "json"] = "text"
    # The lowest level logged. WARNING drops the INFO lines about single requests (a task cancelled).
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # OpenTelemetry's own variable: otlp and/or console (comma-separated) turn tracing on; none or unset:
    # off. The other OTEL_* variables are the SDK's (endpoint, service name, sampler, propagators).
    OTEL_TRACES_EXPORTER: str = "none"

    @field_validator("OTEL_TRACES_EXPORTER")
    @classmethod
    def _exporters(cls, value: str) -> str:
        parse_exporters(value)  # a ValueError naming the unknown one
        return value

    @property
    def trace_exporters(self) -> list[str]:
        """The span exporters to use; empty: tracing is off."""
        return parse_exporters(self.OTEL_TRACES_EXPORTER)


#: The values OTEL_TRACES_EXPORTER may list.
TRACE_EXPORTERS = ("otlp", "console", "none")


def parse_exporters(value: str) -> list[str]:
    """The exporters OTEL_TRACES_EXPORTER names, `none` left out (empty: tracing off)."""
    names = [name.strip().lower() for name in value.split(",") if name.strip()]
    for name in names:
        if name not in TRACE_EXPORTERS:
            raise ValueError(f"{name!r} is not one of {', '.join(TRACE_EXPORTERS)}")
    return [name for name in names if name != "none"]
