"""Settings of the state store, read once from the environment (documented in README.md).

Also the one way the compute side's packages turn unusable settings into a one-line start-up error.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TypeVar

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

S = TypeVar("S", bound=BaseSettings)


class StateSettings(BaseSettings):
    """Where task state lives."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=True, extra="ignore")

    STATE_DIR: Path = Path("./results")

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


def load(settings_class: type[S]) -> S:
    """Read `settings_class` from the environment, or stop the program with a one-line message."""
    try:
        return settings_class()
    except ValidationError as exc:
        raise SystemExit(describe_error(exc)) from None
