"""Worker hosts anywhere: Celery workers on two simulated hosts (network namespaces with their own
address and host name, the test's folders hidden from them) that share nothing with the Thrift
server but RabbitMQ and Redis. A task runs on one of them while the Thrift server reads its progress
live from Redis; a host killed with kill -9 mid-task hands the task to the other; a split task's
chunks run on both."""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import httpx
import pytest

from testing.waiting import wait_for
from tests.faults.conftest import FaultStack, queue_consumers, running_stack, start_task, task, wait_ended
from tests.faults.hosts import Host

pytestmark = pytest.mark.timeout(240)
DEMO_SECONDS = 6.0


@pytest.fixture(scope="module")
def stack(broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    # d=8 (~7e8 terms) is split into 14 chunks; d=3 and d=4 are not.
    with running_stack(
        tmp_path_factory.mktemp("hosts"),
        broker_url,
        state_backend="redis",
        redis_url=redis_url,
        DEMO_MIN_SECONDS=str(DEMO_SECONDS),
        SPLIT_MIN_TERMS="100000000",
        SPLIT_CHUNK_TERMS="50000000",
    ) as s:
        s.supervisorctl("stop", "worker", "chunks")  # from now on only the simulated hosts compute
        yield s


@pytest.fixture(scope="module")
def hosts(stack: FaultStack) -> Iterator[list[Host]]:
    first = random.randrange(1, 240)
    made = [Host(first + i, hostname=f"worker-host-{'ab'[i]}") for i in range(2)]
    broker, redis_ = urlsplit(stack.broker_url), urlsplit(stack.redis_url)
    try:
        for host in made:
            host.create()
            b_host, b_port = host.reach((broker.hostname or "127.0.0.1", broker.port or 5672))
            r_host, r_port = host.reach((redis_.hostname or "127.0.0.1", redis_.port or 6379))
            env = stack.env(
                BROKER_URL=f"amqp://{broker.username}:{broker.password}@{b_host}:{b_port}//",
                REDIS_URL=f"redis://{r_host}:{r_port}{redis_.path or '/0'}",
                WORKER_CONCURRENCY="1",
            )
            del env["STATE_DIR"]  # shares no folder with anything
            host.spawn(
                [sys.executable, "-m", "worker"], env, hidden=[stack.root], log=stack.root / f"{host.hostname}.log"
            )
        wait_for(
            lambda: (
                queue_consumers(stack.broker_url, stack.queue) == 2
                and queue_consumers(stack.broker_url, f"{stack.queue}.chunks") == 2
            ),
            60,
            "both worker hosts to consume both queues" + stack.logs_hint(),
        )
        yield made
    finally:
        for host in made:
            host.destroy()


def _ran_on(stack: FaultStack, hosts: list[Host], task_id: str) -> list[str]:
    return [h.hostname for h in hosts if task_id in (stack.root / f"{h.hostname}.log").read_text(errors="replace")]


def test_a_task_runs_on_another_host_and_its_progress_is_read_live(stack: FaultStack, hosts: list[Host]) -> None:
    task_id = start_task(stack, 3)
    seen = []
    deadline = time.monotonic() + 60
    while (body := task(stack, task_id))["status"] != "SUCCESS" and time.monotonic() < deadline:
        if body["status"] == "PROGRESS":
            seen.append(body["progress"])
        time.sleep(0.2)
    assert body["status"] == "SUCCESS" and body["digits"] == "3.142", body
    assert len(set(seen)) >= 3 and seen == sorted(seen), f"progress read live, never backwards: {seen}"
    assert len(_ran_on(stack, hosts, task_id)) == 1
    assert not list(stack.state_dir.glob("*.json")), "state in Redis only: no state file"


def test_the_hosts_see_none_of_the_servers_folders(stack: FaultStack, hosts: list[Host]) -> None:
    probe = hosts[0].spawn(
        ["ls", "-A", str(stack.root)], {"PATH": "/usr/bin:/bin"}, hidden=[stack.root], log=stack.root / "probe.log"
    )
    assert probe.wait(10) == 0
    lines = (stack.root / "probe.log").read_text().split()
    assert lines == [], f"a worker host can see the server's folder: {lines}"


def test_a_split_task_runs_its_chunks_on_both_hosts(stack: FaultStack, hosts: list[Host]) -> None:
    task_id = start_task(stack, 8)
    done = wait_ended(stack, task_id, timeout=120)
    assert done["status"] == "SUCCESS" and done["digits"] == "3.14159265", done
    assert done["chunks_total"] >= 10 and done["chunks_done"] == done["chunks_total"]
    assert sorted(done["hosts"]) == ["worker-host-a", "worker-host-b"], done["hosts"]


# Last: it leaves one host.
def test_a_host_killed_mid_task_hands_the_task_to_the_other(stack: FaultStack, hosts: list[Host]) -> None:
    task_id = start_task(stack, 4)
    running = wait_for(
        lambda: (
            _ran_on(stack, hosts, task_id)
            and task(stack, task_id)["status"] == "PROGRESS"
            and _ran_on(stack, hosts, task_id)
        ),
        30,
        "the task to start on a host",
    )
    [victim] = [h for h in hosts if h.hostname == running[0]]
    killed = victim.kill()
    assert killed, "nothing ran on the host"
    done = wait_ended(stack, task_id, timeout=90)
    assert done["status"] == "SUCCESS" and done["digits"] == "3.1416" and done["attempts"] == 2, done
    assert set(_ran_on(stack, hosts, task_id)) == {h.hostname for h in hosts}
    assert httpx.get(f"{stack.api}/task/{task_id}", timeout=5).status_code == 200
