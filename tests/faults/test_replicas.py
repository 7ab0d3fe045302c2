"""Two Thrift server replicas behind one gateway (TSERVER_ADDRESSES), state in Redis: one replica is
killed with kill -9 while 50 connections read task states for 10 s, and not one read fails."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest

from testing.stack import REPO
from testing.waiting import free_port, wait_for
from tests.faults.conftest import FaultStack, start_task, wait_running

pytestmark = pytest.mark.timeout(240)

CONNECTIONS = 50
SECONDS = 10.0


@pytest.fixture(scope="module")
def stack(broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    # Tasks at a demo pace stay WAITING or PROGRESS for the whole run, so every read of them goes through Thrift.
    stack = FaultStack(
        root=tmp_path_factory.mktemp("replicas"),
        broker_url=broker_url,
        state_backend="redis",
        settings={"DEMO_MIN_SECONDS": "60"},
    )
    stack.redis_url = redis_url
    stack.settings["TSERVER_ADDRESSES"] = f"127.0.0.1:{stack.tserver_port},127.0.0.1:{free_port()}"
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def test_reads_survive_a_replica_killed_with_kill_9(stack: FaultStack, tmp_path) -> None:
    # The second replica: the same program and settings as supervisord's, on a port of its own,
    # outside supervisord so that nothing restarts it.
    second = int(stack.settings["TSERVER_ADDRESSES"].rsplit(":", 1)[1])
    out = open(tmp_path / "tserver-2.out", "wb")  # noqa: SIM115 - closed with the process
    replica = subprocess.Popen(
        [sys.executable, "-m", "tserver"],
        cwd=REPO,
        stdout=out,
        stderr=subprocess.STDOUT,
        env=stack.env(TSERVER_PORT=str(second), TSERVER_METRICS_PORT=str(free_port())),
        start_new_session=True,
    )
    out.close()
    try:
        wait_for(lambda: _listening(second), 30, "the second Thrift server replica to listen")
        tasks = [start_task(stack, 3) for _ in range(8)]
        for task_id in tasks[:2]:  # two pool processes: the others stay WAITING
            wait_running(stack, task_id)
        before, after = asyncio.run(_read_while_killing(stack, tasks, replica.pid))
    finally:
        if replica.poll() is None:
            os.killpg(replica.pid, signal.SIGKILL)
        replica.wait(10)
    print(f"{CONNECTIONS} connections, {SECONDS:g} s: before the kill {dict(before)}, after {dict(after)}")
    assert replica.returncode == -signal.SIGKILL
    assert set(before) == {200} and set(after) == {200}, f"failed reads: {dict(before)}, {dict(after)}"
    assert before[200] > 100 and after[200] > 100, "too few reads to prove anything"


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
    except OSError:
        return False
    return True


async def _read_while_killing(stack: FaultStack, tasks: list[str], pid: int) -> tuple[Counter[int | str], ...]:
    """Outcomes of the reads (status code or error) before and after the kill."""
    before: Counter[int | str] = Counter()
    after: Counter[int | str] = Counter()
    outcomes = before
    stop_at = time.monotonic() + SECONDS
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=CONNECTIONS)
    async with httpx.AsyncClient(base_url=stack.api, limits=limits, timeout=10) as client:

        async def reader(n: int) -> None:
            i = n
            while time.monotonic() < stop_at:
                try:
                    r = await client.get(f"/task/{tasks[i % len(tasks)]}")
                    outcomes[r.status_code] += 1
                    if r.status_code == 200:
                        assert r.json()["status"] in ("WAITING", "PROGRESS")
                except httpx.HTTPError as exc:
                    outcomes[type(exc).__name__] += 1
                i += 1

        async def killer() -> None:
            nonlocal outcomes
            await asyncio.sleep(SECONDS / 2)
            os.kill(pid, signal.SIGKILL)
            outcomes = after  # reads that end from now on; those in flight on the killed replica too

        await asyncio.gather(killer(), *(reader(n) for n in range(CONNECTIONS)))
    return before, after
