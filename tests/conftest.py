"""Shared test fixtures: the broker the tests use. Ports and waiting come from testing/ (shared with bench/)."""

from __future__ import annotations

import os

import pytest

from testing.waiting import free_port, wait_for

__all__ = ["BROKER_URL", "REDIS_URL", "free_port", "wait_for"]

#: The RabbitMQ the tests talk to; each test run uses queues of its own on it.
BROKER_URL = os.environ.get("TEST_BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
#: The Redis the tests talk to; each test uses a key prefix of its own on it.
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def broker_url() -> str:
    """The broker URL, after checking that RabbitMQ answers (a clear failure if it does not)."""
    from kombu import Connection

    try:
        with Connection(BROKER_URL, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=0, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure to connect is reported the same way
        pytest.fail(
            f"RabbitMQ does not answer at {BROKER_URL} ({exc}). Start it with `rabbitmq-server -detached` "
            "(or `bash scripts/ensure-rabbitmq.sh`), or point TEST_BROKER_URL at one."
        )
    return BROKER_URL


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The Redis URL, after checking that Redis answers (a clear failure if it does not)."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except redis.RedisError as exc:
        pytest.fail(
            f"Redis does not answer at {REDIS_URL} ({exc}). Start it with `redis-server --daemonize yes` "
            "(Debian: apt-get install redis-server), or point TEST_REDIS_URL at one."
        )
    finally:
        client.close()
    return REDIS_URL
