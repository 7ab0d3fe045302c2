"""Settings of the gateway, read once from the environment (documented in README.md)."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.contract import DEFAULT_MAX_DECIMAL, MAX_SUPPORTED_DECIMAL, MIN_DECIMAL


class GatewaySettings(BaseSettings):
    """Where the gateway listens, where the Thrift server is, and how long to wait for it."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    API_HOST: str = Field(default="127.0.0.1", min_length=1)
    API_PORT: int = Field(default=8000, ge=0, le=65535)
    TSERVER_HOST: str = Field(default="127.0.0.1", min_length=1)
    TSERVER_PORT: int = Field(default=9000, ge=1, le=65535)
    # Thrift server replicas, host:port,host:port,... (IPv6 as [addr]:port); empty: TSERVER_HOST:TSERVER_PORT.
    TSERVER_ADDRESSES: str = ""
    # Longer than the Thrift server's own bound on a publish (PUBLISH_TIMEOUT x retries), shorter
    # than the 5 s within which a user must get an answer.
    THRIFT_TIMEOUT: float = Field(default=4.5, gt=0, le=60)
    THRIFT_CONNECT_TIMEOUT: float = Field(default=1.0, gt=0, le=60)
    # Persistent connections kept to the Thrift server; also the cap on calls in flight.
    THRIFT_POOL_SIZE: int = Field(default=32, ge=1, le=1024)
    # Same variable as the compute side's: the gateway rejects out-of-range input without a hop.
    MAX_DECIMAL: int = Field(default=DEFAULT_MAX_DECIMAL, ge=MIN_DECIMAL, le=MAX_SUPPORTED_DECIMAL)
    # docs/observability.md. false: no /metrics route and no counting at all (the benchmarks' baseline).
    METRICS_ENABLED: bool = True
    # text, or json: one JSON object per line (app/logs.py).
    LOG_FORMAT: Literal["text", "json"] = "text"
    # The lowest level logged. WARNING drops the INFO line a start or a cancel logs (task queued, cancelled).
    LOG_LEVEL: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    # OpenTelemetry's standard variable: otlp and/or console turn tracing on; unset or none: off.
    OTEL_TRACES_EXPORTER: str = "none"

    @field_validator("OTEL_TRACES_EXPORTER")
    @classmethod
    def _exporters(cls, value: str) -> str:
        parse_exporters(value)  # raises ValueError naming the unknown exporter
        return value

    @property
    def trace_exporters(self) -> list[str]:
        """The span exporters to use; empty: tracing is off."""
        return parse_exporters(self.OTEL_TRACES_EXPORTER)

    @field_validator("TSERVER_ADDRESSES")
    @classmethod
    def _addresses(cls, value: str) -> str:
        parse_addresses(value)  # raises ValueError naming the bad entry
        return value

    @property
    def thrift_addresses(self) -> list[tuple[str, int]]:
        """The Thrift servers to call: TSERVER_ADDRESSES, or the one at TSERVER_HOST:TSERVER_PORT."""
        return parse_addresses(self.TSERVER_ADDRESSES) or [(self.TSERVER_HOST, self.TSERVER_PORT)]


def parse_addresses(text: str) -> list[tuple[str, int]]:
    """`host:port,[v6]:port,...` as (host, port) pairs; ValueError naming the first bad entry."""
    addresses = []
    for entry in (e.strip() for e in text.split(",")) if text.strip() else ():
        try:
            parts = urlsplit(f"//{entry}")
            host, port = parts.hostname, parts.port  # .port raises ValueError when out of range
            malformed = parts.netloc != entry or bool(parts.path) or "@" in entry
        except ValueError:
            host, port, malformed = None, None, True
        if not host or not port or malformed or any(c.isspace() for c in entry):
            raise ValueError(f"{entry!r} is not host:port (port 1-65535; an IPv6 address in brackets)")
        addresses.append((host, port))
    return addresses


#: The values of OTEL_TRACES_EXPORTER the gateway knows (a comma-separated list of them).
TRACE_EXPORTERS = ("otlp", "console", "none")


def parse_exporters(value: str) -> list[str]:
    """The exporters named in OTEL_TRACES_EXPORTER (empty: tracing off); ValueError naming an unknown one."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    for name in names:
        if name not in TRACE_EXPORTERS:
            raise ValueError(f"{name!r} is not one of {', '.join(TRACE_EXPORTERS)}")
    return [n for n in names if n != "none"]


def describe_error(exc: ValidationError) -> str:
    """One line naming each unusable setting."""
    parts = [f"{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}" for e in exc.errors()]
    return "invalid configuration: " + "; ".join(parts)


def load_settings() -> GatewaySettings:
    """Read the settings, or stop the program with a one-line message."""
    try:
        return GatewaySettings()
    except ValidationError as exc:
        raise SystemExit(describe_error(exc)) from None
