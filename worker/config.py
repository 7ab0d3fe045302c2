"""Settings of the compute side, read once from the environment (documented in README.md)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: The largest number of decimals the product accepts by default: d=10 takes ~2.5e10 series terms
#: (about 4.5 s on one core with the C kernel); d=11 takes ~2.1e11 (~40 s) and d=12 ~3.5e12 (~12 min).
DEFAULT_MAX_DECIMAL = 10


class WorkerSettings(BaseSettings):
    """Broker, queue, state folder and limits shared by the worker and the Thrift server."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    BROKER_URL: str = "amqp://guest:guest@localhost:5672//"
    CELERY_QUEUE: str = Field(default="pi", min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.:-]+$")
    STATE_DIR: Path = Path("./results")
    MAX_DECIMAL: int = Field(default=DEFAULT_MAX_DECIMAL, ge=1, le=12)
    # Publishing must give up quickly when the broker is gone, so the caller can answer 503 in time.
    PUBLISH_TIMEOUT: float = Field(default=1.5, gt=0, le=30)
    PUBLISH_RETRIES: int = Field(default=1, ge=0, le=10)
    # A task delivered this many times without finishing (its worker died each time) is failed.
    TASK_MAX_ATTEMPTS: int = Field(default=3, ge=1, le=100)
    # Demo pace: stretch every task to at least this many seconds so progress can be watched even
    # at small decimals, as the original did with sleeps. 0 (the default) turns it off. Never
    # changes the digits.
    DEMO_MIN_SECONDS: float = Field(default=0.0, ge=0, le=3600)

    @field_validator("BROKER_URL")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        if not value.startswith(("amqp://", "amqps://", "pyamqp://")):
            raise ValueError("must be an amqp:// URL")
        return value

    @field_validator("STATE_DIR")
    @classmethod
    def _state_dir_writable(cls, value: Path) -> Path:
        path = value.expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
                pass
        except OSError as exc:
            raise ValueError(f"{path} is not a writable folder ({exc.strerror or exc})") from exc
        return path


def describe_error(exc: ValidationError) -> str:
    """One line naming each unusable setting, for a start-up failure message."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"]) or "settings"
        shown = os.environ.get(name, err.get("input"))
        parts.append(f"{name}={shown!r}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load_settings() -> WorkerSettings:
    """Read the settings, or stop the program with a one-line message."""
    try:
        return WorkerSettings()
    except ValidationError as exc:
        raise SystemExit(describe_error(exc)) from None
