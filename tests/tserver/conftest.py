"""Fixtures of the runtime tests (tests/tserver/runtime_harness.py holds the harness)."""

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.tserver.runtime_harness import make_server_fixture


@pytest.fixture
def queue_name(broker_url: str) -> Iterator[str]:
    """A queue of the test's own on the real RabbitMQ, deleted after it."""
    from tests.tserver.publishing_harness import _delete_queue

    name = f"test-aiopub-{uuid.uuid4().hex[:12]}"
    yield name
    _delete_queue(broker_url, name)


@pytest.fixture
def relay(broker_url: str) -> Iterator[Any]:
    """A relay in front of RabbitMQ that can hold the broker's bytes back or cut the connection."""
    from tests.tserver.publishing_harness import Relay

    relay = Relay(broker_url)
    yield relay
    relay.close()


@pytest.fixture
def make_server() -> Iterator[Any]:
    """Starts ThriftServers in background threads for one test; closes them after."""
    yield from make_server_fixture()
