"""Shared test helpers: the broker the tests use, free ports, and waiting for things."""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable

import pytest

#: The RabbitMQ the tests talk to; each test run uses queues of its own on it.
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(check: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - reported if the wait fails
            last_error = exc
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else ""))


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The broker URL, after checking that RabbitMQ answers (a clear failure if it does not)."""
    from kombu import Connection

    try:
        with Connection(BROKER_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=0, timeout=3)
    except Exception as exc:  # noqa: BLE001
        pytest.fail(
            f"RabbitMQ does not answer at {BROKER_URL} ({exc}). Start it with `rabbitmq-server -detached` "
            "(or `bash scripts/ensure-rabbitmq.sh`), or point TEST_BROKER_URL at one."
        )
    return BROKER_URL
