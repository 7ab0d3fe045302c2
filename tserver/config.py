"""Settings of the Thrift server, read once from the environment (documented in README.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
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
