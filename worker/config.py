"""Settings of the worker, read once from the environment (documented in README.md)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from RPC.constants import DEFAULT_MAX_DECIMAL, MAX_SUPPORTED_DECIMAL, MIN_DECIMAL


class WorkerSettings(BaseSettings):
    """The broker and queue the worker consumes, and the limits of a calculation."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    BROKER_URL: str = Field(default="amqp://guest:guest@localhost:5672//", pattern=r"^(amqps?|pyamqp)://")
    CELERY_QUEUE: str = Field(default="pi", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    # d=10 takes ~2.5e10 series terms (about 4.5 s on one core with the C kernel); d=11 ~2.1e11 (~40 s)
    # and d=12 ~3.5e12 (~12 min).
    MAX_DECIMAL: int = Field(default=DEFAULT_MAX_DECIMAL, ge=MIN_DECIMAL, le=MAX_SUPPORTED_DECIMAL)
    # A task delivered this many times without finishing (its worker died each time) is failed.
    TASK_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=100)
    # Demo pace: stretch every task to at least this many seconds so progress can be watched even
    # at small decimals, as the original did with sleeps. 0 (the default) turns it off. Never
    # changes the digits.
    DEMO_MIN_SECONDS: float = Field(default=0.0, ge=0, le=3600)
