"""The Redis holding task state goes away (stopped, then frozen) while the product runs on it.

What a user sees: starts and reads of tasks not yet ended answer 503 naming the state store within
5 s (never a 500, never a hang); the task that was running keeps its result and records it once
Redis is back; everything recovers by itself, and nothing is lost.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import FaultStack, running_stack, start_task, task, wait_ended, wait_running
from tests.faults.redis_server import PrivateRedis

pytestmark = pytest.mark.timeout(240)
PI_4 = "3.1416"


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def stack(
    broker_url: str, private_redis: PrivateRedis, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultStack]:
    # A demo pace of 8 s keeps a task running across the outage.
    with running_stack(
        tmp_path_factory.mktemp("stack"),
        broker_url,
        state_backend="redis",
        redis_url=private_redis.url,
        DEMO_MIN_SECONDS="8",
    ) as s:
        yield s


def answers_503_naming_the_store(stack: FaultStack, method: str, path: str) -> float:
    """Seconds the gateway took to answer 503 with a detail that names the state store."""
    started = time.monotonic()
    r = httpx.request(method, stack.api + path, timeout=10)
    took = time.monotonic() - started
    assert r.status_code == 503, (path, r.status_code, r.text)
    assert "state store (Redis at 127.0.0.1:" in r.json()["detail"], r.json()
    assert took < 5, (path, took)
    return took


def test_redis_stopped_then_restarted(stack: FaultStack, private_redis: PrivateRedis) -> None:
    running = start_task(stack, 4)
    wait_running(stack, running)
    private_redis.stop()
    try:
        took = [
            answers_503_naming_the_store(stack, "POST", "/calcpi/2"),
            answers_503_naming_the_store(stack, "GET", f"/task/{running}"),
            answers_503_naming_the_store(stack, "GET", "/alltasks"),
        ]
        print(f"Redis stopped: 503 in {max(took) * 1000:.0f} ms at most")
        time.sleep(2)  # the worker's writes fail meanwhile; it keeps the task
    finally:
        private_redis.start()
    done = wait_ended(stack, running, timeout=90)
    assert done["status"] == "SUCCESS" and done["digits"] == PI_4 and done["attempts"] == 1
    again = start_task(stack, 2)
    assert wait_ended(stack, again, timeout=60)["digits"] == "3.14"
    listed = httpx.get(f"{stack.api}/alltasks", params={"limit": 1000}, timeout=10).json()
    assert {running, again} <= {t["id"] for t in listed}


def test_redis_frozen_answers_503_in_time_then_recovers(stack: FaultStack, private_redis: PrivateRedis) -> None:
    private_redis.freeze()
    try:
        answers_503_naming_the_store(stack, "POST", "/calcpi/2")
        answers_503_naming_the_store(stack, "GET", "/alltasks")
    finally:
        private_redis.thaw()
    later = start_task(stack, 3)
    assert wait_ended(stack, later, timeout=60)["digits"] == "3.142"
    assert task(stack, later)["status"] == "SUCCESS"


def test_the_private_server_keeps_its_data_across_a_restart(private_redis: PrivateRedis, tmp_path: Path) -> None:
    import redis

    client = redis.Redis.from_url(private_redis.url)
    client.set("probe", b"kept")
    client.close()
    private_redis.stop()
    private_redis.start()
    client = redis.Redis.from_url(private_redis.url)
    assert client.get("probe") == b"kept"
    client.close()


def test_a_thrift_server_started_while_redis_is_down_serves_503_then_recovers(tmp_path: Path) -> None:
    # Redis still starting (compose starts everything at once): the server must come up and answer
    # Unavailable naming the store, not exit.
    import subprocess
    import sys

    from thrift.protocol import TBinaryProtocol
    from thrift.transport import TSocket, TTransport

    from RPC import RPCcelery
    from RPC.ttypes import Unavailable
    from testing.stack import REPO
    from testing.waiting import wait_for

    later = PrivateRedis(tmp_path / "redis")
    port_file = tmp_path / "tserver.port"
    env = {
        **os.environ,
        "STATE_BACKEND": "redis",
        "REDIS_URL": later.url,
        "REDIS_TIMEOUT": "0.5",
        "TSERVER_PORT": "0",
        "TSERVER_METRICS_PORT": "0",
        "HOUSEKEEPING_INTERVAL": "0.5",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "tserver", "--port-file", str(port_file)],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        port = int(wait_for(lambda: port_file.exists() and port_file.read_text().strip(), 30, "the server to listen"))
        transport = TTransport.TFramedTransport(TSocket.TSocket("127.0.0.1", port))
        transport.open()
        client = RPCcelery.Client(TBinaryProtocol.TBinaryProtocol(transport))
        with pytest.raises(Unavailable, match="state store"):
            client.listTaskPage(0, 10, "")
        later.start()
        wait_for(lambda: client.listTaskPage(0, 10, "").total == 0, 10, "the (empty) store to answer")
        assert server.poll() is None, "the server exited"
        transport.close()
    finally:
        server.terminate()
        server.wait(10)
        later.stop()
