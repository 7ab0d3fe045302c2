"""Settings of the Thrift server, read once from the environment (documented in README.md)."""

from __future__ import annotations

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from worker.config import describe_error


class ServerSettings(BaseSettings):
    """Where the Thrift server listens and how much it lets one client use."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    TSERVER_HOST: str = Field(default="127.0.0.1", min_length=1)
    TSERVER_PORT: int = Field(default=9000, ge=0, le=65535)
    # Threads that run calls (they block on disk and on broker confirms); idle connections hold none.
    TSERVER_WORKERS: int = Field(default=8, ge=1, le=256)
    TSERVER_IDLE_TIMEOUT: float = Field(default=60.0, gt=0, le=3600)
    TSERVER_MAX_CONNECTIONS: int = Field(default=2000, ge=1, le=100_000)
    # Ended tasks older than this many seconds are removed (0 keeps them forever). 7 days.
    RESULT_TTL: float = Field(default=7 * 24 * 3600, ge=0)
    # How often the state folder is rescanned for files added or removed by others, and expired
    # results are removed.
    HOUSEKEEPING_INTERVAL: float = Field(default=10.0, gt=0, le=3600)
    # A running task whose worker has not reported for this long is shown as stalled.
    STALLED_AFTER: float = Field(default=30.0, gt=0, le=86400)


def load_settings() -> ServerSettings:
    """Read the settings, or stop the program with a one-line message."""
    try:
        return ServerSettings()
    except ValidationError as exc:
        raise SystemExit(describe_error(exc)) from None
