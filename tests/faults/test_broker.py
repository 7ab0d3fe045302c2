"""RabbitMQ down, back, restarted and frozen, on a private node (the machine's broker stays up).

What a user sees: POST answers 503 with a detail within 5 s and leaves no task behind, reads keep
answering, and the product comes back by itself when the broker does; confirmed messages survive a
broker restart.
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testing.waiting import wait_for
from tests.faults.conftest import (
    FaultStack,
    assert_state_files_sound,
    program_pid,
    running_stack,
    start_task,
    task,
    wait_ended,
)
from tests.faults.rabbit import PrivateRabbit

pytestmark = pytest.mark.timeout(180)

QUEUE_DOWN = "the task queue (RabbitMQ) is unavailable; try again shortly"


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateRabbit]:
    rabbit = PrivateRabbit(tmp_path_factory.mktemp("rabbit"))
    try:
        took = rabbit.start()
        print(f"private RabbitMQ node {rabbit.name} answered after {took:.1f} s")
        yield rabbit
    finally:
        rabbit.thaw()
        rabbit.stop()


@pytest.fixture(scope="module")
def stack(node: PrivateRabbit, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(tmp_path_factory.mktemp("broker"), node.url) as s:
        yield s
        # Stack.stop() deletes the queue: the node must be up for that.
        node.thaw()
        if not node.running:
            node.start()


@pytest.fixture
def broker_up(node: PrivateRabbit, stack: FaultStack) -> Iterator[None]:
    """Each test starts and ends with the node running and answering, and the product accepting
    tasks again (after a failed publish the Thrift server refuses starts for a short cool-down)."""
    yield
    node.thaw()
    if not node.running:
        node.start()
    wait_for(
        lambda: httpx.post(f"{stack.api}/calcpi/1", timeout=10).status_code == 202,
        30,
        "the product to accept tasks again",
    )


def task_files(stack: FaultStack) -> set[str]:
    return {p.name for p in stack.state_dir.glob("*.json")}


def timed(method: str, url: str, timeout: float = 15) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    r = httpx.request(method, url, timeout=timeout)
    return r, time.monotonic() - started


def compute_pids(stack: FaultStack) -> tuple[int, int, int]:
    gateway = stack.procs["gateway"]
    assert gateway.poll() is None, "the gateway has exited"
    return gateway.pid, program_pid(stack, "tserver"), program_pid(stack, "worker")


def test_broker_stopped_post_is_503_reads_answer_and_it_recovers_by_itself(
    stack: FaultStack, node: PrivateRabbit, broker_up: None
) -> None:
    done = start_task(stack, 3)
    assert wait_ended(stack, done)["digits"] == "3.142"
    pids = compute_pids(stack)
    before = task_files(stack)

    print(f"rabbitmqctl stop took {node.stop():.1f} s")
    latencies = []
    for _ in range(3):
        r, took = timed("POST", f"{stack.api}/calcpi/3")
        latencies.append(took)
        assert r.status_code == 503, r.text
        assert r.json() == {"detail": QUEUE_DOWN}
        assert r.headers["Retry-After"] == "5"
        assert took < 5
    for path in (f"/task/{done}", "/alltasks", "/"):
        r, took = timed("GET", stack.api + path)
        assert r.status_code == 200, (path, r.text)
        assert took < 1, f"GET {path} took {took:.2f} s with the broker down"
    assert task_files(stack) == before, "a refused task left its file behind"
    assert_state_files_sound(stack.state_dir)
    print(f"broker stopped: POST answered 503 in {max(latencies) * 1000:.0f} ms at most")

    print(f"private node back after {node.start():.1f} s")
    back = time.monotonic()

    def accepted() -> str | None:
        r = httpx.post(f"{stack.api}/calcpi/3", timeout=10)
        return r.json()["id"] if r.status_code == 202 else None

    new = wait_for(accepted, 30, "a POST to be accepted again", interval=0.2)
    body = wait_ended(stack, new, timeout=60)
    print(f"recovered: a new task was accepted {time.monotonic() - back:.2f} s after the node answered and finished")
    assert body["status"] == "SUCCESS" and body["digits"] == "3.142"
    assert compute_pids(stack) == pids, "a process was restarted to recover"


def test_tasks_published_before_a_broker_restart_all_run(
    stack: FaultStack, node: PrivateRabbit, broker_up: None
) -> None:
    assert "stopped" in stack.supervisorctl("stop", "worker").stdout
    try:
        ids = [start_task(stack, decimal) for decimal in (2, 3, 4, 5)]
        assert all(task(stack, t)["status"] == "WAITING" for t in ids)
        print(f"node restart: stop {node.stop():.1f} s, start {node.start():.1f} s")
    finally:
        assert "started" in stack.supervisorctl("start", "worker").stdout
    bodies = [wait_ended(stack, t, timeout=60) for t in ids]
    assert [b["digits"] for b in bodies] == ["3.14", "3.142", "3.1416", "3.14159"]
    assert all(b["status"] == "SUCCESS" and b["attempts"] == 1 for b in bodies)
    # The tserver's publishing connection was cut by the restart: it reconnects by itself.
    assert wait_ended(stack, start_task(stack, 2))["digits"] == "3.14"


def test_frozen_broker_post_is_503_in_time_and_reads_stay_quick(
    stack: FaultStack, node: PrivateRabbit, broker_up: None
) -> None:
    """A broker that accepts TCP but never answers (SIGSTOP) is the worst case for every timeout."""
    done = start_task(stack, 2)  # the tserver now holds an open publishing connection
    wait_ended(stack, done)
    node.freeze()
    try:
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            posts = [pool.submit(timed, "POST", f"{stack.api}/calcpi/2") for _ in range(16)]
            time.sleep(0.3)  # the POSTs are now waiting on the broker
            reads = {path: timed("GET", stack.api + path) for path in (f"/task/{done}", "/", "/alltasks")}
            answers = [f.result() for f in posts]
    finally:
        node.thaw()
    slowest = max(took for _, took in answers)
    print(
        f"frozen broker: 16 concurrent POSTs answered in {min(t for _, t in answers):.2f}..{slowest:.2f} s; "
        + ", ".join(f"GET {p} {r.status_code} in {t * 1000:.0f} ms" for p, (r, t) in reads.items())
    )
    for r, _ in answers:
        assert r.status_code == 503 and r.json()["detail"], r.text
    assert slowest < 5, f"a POST took {slowest:.2f} s with the broker frozen"
    for path, (r, took) in reads.items():
        assert r.status_code == 200, (path, r.text)
        assert took < 1, f"GET {path} took {took:.2f} s while POSTs waited on a frozen broker"


def test_a_post_refused_with_503_queues_nothing(stack: FaultStack, node: PrivateRabbit, broker_up: None) -> None:
    """503 tells the client to try again: the refused task must not also run behind its back."""
    wait_ended(stack, start_task(stack, 2))  # an open publishing connection, as in normal operation
    before = task_files(stack)
    node.freeze()
    try:
        r, took = timed("POST", f"{stack.api}/calcpi/2")
    finally:
        node.thaw()
    assert r.status_code == 503 and took < 5, (r.status_code, r.text, took)
    time.sleep(3)  # the thawed broker handles whatever it had received
    after = task_files(stack)
    # A message the broker confirmed too late is in the queue: its record may exist, but only as
    # REVOKED (not accepted), never run to an end.
    ghosts = {
        name: Path(stack.state_dir / name).read_text()[:160]
        for name in after - before
        if json.loads(Path(stack.state_dir / name).read_text())["status"] != "REVOKED"
    }
    assert not ghosts, f"a task refused with 503 ({r.json()['detail']!r}) ran anyway: {ghosts}"
