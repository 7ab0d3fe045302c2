"""Variants of the product that the HTTP sections (status, enqueue, listing) measure side by side.

A variant is a state backend plus extra settings for every process of its product, so that a
comparison is a line of configuration: `--variant NAME=BACKEND[,SETTING=VALUE...]` (repeatable; the
first one is the baseline every other is compared with). By default: the files backend against Redis.
For example, once the product has the settings, metrics off and tracing on against the default:

    python -m bench --only status,enqueue --variant files=files \
        --variant no-metrics=files,METRICS_ENABLED=false --variant tracing=files,OTEL_TRACES_EXPORTER=console
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field

BACKENDS = ("files", "redis")
_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,31}$")
_SETTING = re.compile(r"^[A-Z][A-Z0-9_]*$")


@dataclass(frozen=True)
class Variant:
    """One product configuration: its name in the report, its state backend, its extra settings."""

    name: str
    backend: str = "files"
    env: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """How the report names its configuration."""
        extra = "".join(f", {k}={v}" for k, v in self.env.items())
        return f"{self.name}: STATE_BACKEND={self.backend}{extra}"


DEFAULT_VARIANTS = (Variant("files", "files"), Variant("redis", "redis"))


def parse_variant(text: str) -> Variant:
    """`NAME=BACKEND[,SETTING=VALUE...]` as a Variant; argparse's error for anything else."""
    name, _, rest = text.partition("=")
    parts = rest.split(",") if rest else []
    if not _NAME.match(name) or not parts or parts[0] not in BACKENDS:
        raise argparse.ArgumentTypeError(
            f"{text!r}: expected NAME=BACKEND[,SETTING=VALUE...], BACKEND one of "
            f"{', '.join(BACKENDS)}, NAME in lower case"
        )
    env: dict[str, str] = {}
    for part in parts[1:]:
        key, sep, value = part.partition("=")
        if not sep or not _SETTING.match(key):
            raise argparse.ArgumentTypeError(f"{text!r}: {part!r} is not SETTING=VALUE")
        env[key] = value
    return Variant(name, parts[0], env)


def check_variants(variants: list[Variant]) -> tuple[Variant, ...]:
    """The variants to run (the defaults if none were given); SystemExit on a repeated name."""
    if not variants:
        return DEFAULT_VARIANTS
    names = [v.name for v in variants]
    if len(set(names)) != len(names):
        raise SystemExit(f"bench: variant names must differ: {', '.join(names)}")
    return tuple(variants)


def by_backend(variants: tuple[Variant, ...], backend: str) -> Variant | None:
    """The first variant on `backend`, if any."""
    return next((v for v in variants if v.backend == backend), None)
