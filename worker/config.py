"""Settings of the worker, read once from the environment (documented in README.md)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from RPC.constants import DEFAULT_MAX_DECIMAL, MAX_SUPPORTED_DECIMAL, MIN_DECIMAL

_QUORUM_DELIVERY_LIMIT = 20


class WorkerSettings(BaseSettings):
    """The broker and queue the worker consumes, and the limits of a calculation."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    BROKER_URL: str = Field(default="amqp://guest:guest@localhost:5672//", pattern=r"^(amqps?|pyamqp)://")
    CELERY_QUEUE: str = Field(default="pi", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    # quorum: replicated over a RabbitMQ cluster's nodes (the queue must be declared so from the start).
    CELERY_QUEUE_TYPE: Literal["classic", "quorum"] = "classic"
    # d=10 takes ~2.5e10 series terms (about 4.5 s on one core with the C kernel); d=11 ~2.1e11 (~40 s)
    # and d=12 ~3.5e12 (~12 min).
    MAX_DECIMAL: int = Field(default=DEFAULT_MAX_DECIMAL, ge=MIN_DECIMAL, le=MAX_SUPPORTED_DECIMAL)
    # Pool processes of `python -m worker` (supervisord passes the same variable); default: one per CPU.
    WORKER_CONCURRENCY: int | None = Field(default=None, ge=1, le=256)
    # A calculation estimated to need more series terms than this is split into chunks that run in
    # parallel on every worker process and host (about 1.5 s of work on one of our cores).
    SPLIT_MIN_TERMS: int = Field(default=10**10, ge=1)
    # Series terms per chunk: about 0.5-1.4 s of work on one of our cores.
    SPLIT_CHUNK_TERMS: int = Field(default=4 * 10**9, ge=2, le=2**53)
    # At most this many chunks per calculation (chunks grow instead): bounds the chord's results.
    SPLIT_MAX_CHUNKS: int = Field(default=5000, ge=1, le=100_000)
    # Where Celery keeps the chunks' results until the chord combines them: by default Redis when the
    # state is there, else a SQLite file in STATE_DIR (one host). Any Celery result backend URL.
    CELERY_RESULT_BACKEND: str = ""
    # A task delivered this many times without finishing (its worker died each time) is failed.
    TASK_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=100)
    # Demo pace: stretch every task to at least this many seconds so progress can be watched even
    # at small decimals, as the original did with sleeps. 0 (the default) turns it off. Never
    # changes the digits.
    DEMO_MIN_SECONDS: float = Field(default=0.0, ge=0, le=3600)

    # What the worker lets be seen while it runs (docs/observability.md, "Worker").
    # false: no counting, no metrics folder, no listener (the baseline of "metrics on against off").
    METRICS_ENABLED: bool = True
    # The listener that serves the sum of every pool process (and of the sibling programs sharing
    # WORKER_METRICS_DIR). 0 or empty: none; the program still counts, for a sibling to serve.
    WORKER_METRICS_HOST: str = Field(default="127.0.0.1", min_length=1)
    WORKER_METRICS_PORT: int = Field(default=9101, ge=0, le=65535)
    # The folder where the worker programs of one host keep their prometheus_client multiprocess files,
    # one sub-folder per program start. Empty: a private folder in the temp dir (one program alone).
    WORKER_METRICS_DIR: str = ""
    # text: Celery's lines (with task and trace ids appended when known); json: one object per line.
    LOG_FORMAT: Literal["text", "json"] = "text"
    # The task events Flower needs (task-received/started/succeeded..., task-sent for chunks).
    CELERY_EVENTS: bool = False
    # OpenTelemetry's own variable: otlp or console turns tracing on; the other OTEL_* are the SDK's.
    OTEL_TRACES_EXPORTER: Literal["", "none", "otlp", "console"] = ""

    @field_validator("WORKER_METRICS_PORT", mode="before")
    @classmethod
    def _empty_port_is_zero(cls, value: object) -> object:
        # supervisord writes WORKER_METRICS_PORT= for the program that leaves serving to its sibling.
        return 0 if isinstance(value, str) and not value.strip() else value

    @model_validator(mode="after")
    def _attempts_under_the_brokers_limit(self) -> WorkerSettings:
        # RabbitMQ 4 drops a quorum queue's message after 20 redeliveries; our own count must decide first.
        if self.CELERY_QUEUE_TYPE == "quorum" and self.TASK_MAX_ATTEMPTS >= _QUORUM_DELIVERY_LIMIT:
            raise ValueError(
                f"TASK_MAX_ATTEMPTS must be under {_QUORUM_DELIVERY_LIMIT} with CELERY_QUEUE_TYPE=quorum "
                "(RabbitMQ's default delivery limit of quorum queues)"
            )
        return self
