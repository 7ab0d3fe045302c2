"""Settings of the state store, read once from the environment (documented in README.md).

Also the one way the compute side's packages turn unusable settings into a one-line start-up error.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from redis.connection import parse_url as _untyped_parse_url

# redis-py's parse_url carries no annotations (mypy --strict refuses an untyped call): typed here once.
parse_url: Callable[[str], dict[str, Any]] = _untyped_parse_url

S = TypeVar("S", bound=BaseSettings)


class StateSettings(BaseSettings):
    """Where task state lives: files in a folder (one host, or hosts sharing a volume), or Redis."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    STATE_BACKEND: Literal["files", "redis"] = "files"
    STATE_DIR: Path = Path("./results")
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    # Every key of ours starts with this. Braces allowed: a hash tag keeps the keys in one cluster slot.
    REDIS_KEY_PREFIX: str = Field(default="pi:", pattern=r"^[A-Za-z0-9_.:{}-]{1,64}$")
    # Seconds one call to Redis may take in all (retries included) before it is reported unavailable.
    REDIS_TIMEOUT: float = Field(default=2.0, gt=0, le=30)

    @field_validator("REDIS_URL")
    @classmethod
    def _redis_url(cls, value: str) -> str:
        try:
            parse_url(value)
        except ValueError as exc:
            raise ValueError(f"not a Redis URL ({exc})") from None
        return value

    @model_validator(mode="after")
    def _state_dir_writable(self) -> StateSettings:
        # A worker host on Redis shares no folder with anything: only the files backend needs one.
        if self.STATE_BACKEND != "files":
            return self
        path = self.STATE_DIR.expanduser().resolve()
        try:
            path.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
                pass
        except OSError as exc:
            raise ValueError(f"STATE_DIR: {path} is not a writable folder ({exc.strerror or exc})") from exc
        self.STATE_DIR = path
        return self

    @property
    def redis_where(self) -> str:
        """host:port (or the socket path) of REDIS_URL, for messages: never its password."""
        options = parse_url(self.REDIS_URL)
        return str(options.get("path") or f"{options.get('host', '127.0.0.1')}:{options.get('port', 6379)}")


def describe_error(exc: ValidationError) -> str:
    """One line naming each unusable setting, for a start-up failure message."""
    parts = []
    for err in exc.errors():
        name = ".".join(str(p) for p in err["loc"])
        if not name:  # a check of several settings together names them in its message
            parts.append(str(err["msg"]).removeprefix("Value error, "))
            continue
        shown = os.environ.get(name, err.get("input"))
        if name in ("REDIS_URL", "BROKER_URL"):
            shown = "<hidden: it may hold a password>"
        parts.append(f"{name}={shown!r}: {err['msg']}")
    return "invalid configuration: " + "; ".join(parts)


def load(settings_class: type[S]) -> S:
    """Read `settings_class` from the environment, or stop the program with a one-line message."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SystemExit(describe_error(exc)) from None
