"""The end-to-end fixture: one real product per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from testing.stack import Stack
from tests.e2e.backends import BACKENDS, stack_on_backend


@pytest.fixture(scope="session", params=BACKENDS)
def stack(
    request: pytest.FixtureRequest, broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """supervisord (tserver + worker) and the gateway, with each state backend in turn."""
    # Whole calculations here: tests rely on a d=10 task holding a worker process for seconds (split
    # ones have tests of their own: tests/faults/test_split*.py).
    with stack_on_backend(request, broker_url, redis_url, tmp_path_factory, "stack", SPLIT_MIN_TERMS=str(10**15)) as s:
        yield s


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/e2e/" in str(item.path):
            item.add_marker(pytest.mark.e2e)
