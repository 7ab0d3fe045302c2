"""One real product per state backend, for the fixtures of tests/e2e (parametrized over BACKENDS)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from testing.stack import Stack, running_stack

BACKENDS = ["files", "redis"]


@contextmanager
def stack_on_backend(
    request: pytest.FixtureRequest,
    broker_url: str,
    redis_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    name: str,
    **env: str,
) -> Iterator[Stack]:
    """A product on the fixture's backend (`request.param`), in a folder called `name`, with `env`."""
    with running_stack(
        tmp_path_factory.mktemp(name), broker_url, state_backend=request.param, redis_url=redis_url, **env
    ) as s:
        yield s
