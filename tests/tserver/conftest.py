"""Fixtures of the runtime tests (tests/tserver/runtime_harness.py holds the harness)."""

from collections.abc import Iterator
from typing import Any

import pytest

from tests.tserver.runtime_harness import make_server_fixture


@pytest.fixture
def make_server() -> Iterator[Any]:
    """Starts ThriftServers in background threads for one test; closes them after."""
    yield from make_server_fixture()
