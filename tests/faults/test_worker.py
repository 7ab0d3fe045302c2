"""A Celery worker killed or frozen mid-task: the task is delivered again and finishes, or ends FAILURE
with a reason once TASK_MAX_ATTEMPTS deliveries died, and a frozen one shows `stalled`.

One stack, with TASK_MAX_ATTEMPTS=2 (a task may die once and still finish) and STALLED_AFTER=2 s.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import psutil
import pytest

from tests.faults.conftest import (
    PI_10,
    FaultStack,
    alive,
    assert_state_files_sound,
    computing_child,
    kill_tree,
    program_pid,
    running_stack,
    start_task,
    state_file,
    task,
    wait_ended,
    wait_restarted,
    wait_running,
    wait_task,
)

pytestmark = pytest.mark.timeout(180)

STALLED_AFTER = 2.0


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    # Whole calculations only: these faults hit the process computing a task (split ones: test_split_faults.py).
    with running_stack(
        tmp_path_factory.mktemp("worker"),
        broker_url,
        SPLIT_MIN_TERMS=str(10**15),
        TASK_MAX_ATTEMPTS="2",
        STALLED_AFTER=str(STALLED_AFTER),
    ) as s:
        yield s


def test_killed_pool_process_task_is_delivered_again_and_finishes(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    wait_running(stack, task_id)
    worker = program_pid(stack, "worker")
    child = computing_child(stack)
    child.kill()
    killed_at = time.monotonic()
    assert state_file(stack, task_id)["status"] == "PROGRESS", "the task ended before the kill"

    again = wait_running(stack, task_id, attempt=2)
    print(f"pool process killed: the task ran again (attempt 2) after {time.monotonic() - killed_at:.2f} s")
    assert again["starttime"] is not None
    body = wait_ended(stack, task_id, timeout=90)
    assert body["status"] == "SUCCESS" and body["digits"] == PI_10 and body["result"] == float(PI_10), body
    assert body["progress"] == 100 and not body["stalled"]
    assert state_file(stack, task_id)["attempts"] == 2
    assert program_pid(stack, "worker") == worker, "only the pool process was to die"


def test_killed_worker_is_restarted_and_its_task_finishes(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    wait_running(stack, task_id)
    old = program_pid(stack, "worker")
    killed = kill_tree(psutil.Process(old))  # the main process and its pool, all at once
    assert len(killed) >= 3 and not alive(killed)
    assert state_file(stack, task_id)["status"] == "PROGRESS", "the task ended before the kill"

    new, took = wait_restarted(stack, "worker", old)
    print(f"whole worker killed: supervisord started a new one after {took:.2f} s")
    body = wait_ended(stack, task_id, timeout=90)
    assert body["status"] == "SUCCESS" and body["digits"] == PI_10, body
    assert state_file(stack, task_id)["attempts"] == 2
    assert program_pid(stack, "worker") == new


def test_task_whose_worker_always_dies_ends_failure_with_the_reason(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    for attempt in (1, 2):  # TASK_MAX_ATTEMPTS=2
        wait_running(stack, task_id, attempt=attempt)
        computing_child(stack).kill()
    body = wait_ended(stack, task_id, timeout=30)
    assert body["status"] == "FAILURE", body
    assert body["error"] == "gave up: the worker died 2 times while computing this task"
    assert body["digits"] is None and body["stoptime"] is not None and body["progress"] < 100
    assert body["attempts"] == 2 and not body["stalled"]
    assert state_file(stack, task_id)["status"] == "FAILURE"
    # The message was acknowledged: the task stays failed, and the next task runs normally.
    assert wait_ended(stack, start_task(stack, 3))["digits"] == "3.142"
    assert task(stack, task_id)["status"] == "FAILURE"
    assert_state_files_sound(stack.state_dir, writers_running=True)


def test_frozen_worker_shows_stalled_then_recovers(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    running = wait_running(stack, task_id)
    assert running["stalled"] is False and running["heartbeat"] is not None
    child = computing_child(stack)
    child.suspend()
    frozen_at = time.monotonic()
    try:
        time.sleep(STALLED_AFTER / 2)
        assert task(stack, task_id)["stalled"] is False, "stalled before STALLED_AFTER had passed"
        stalled = wait_task(stack, task_id, "to show stalled: true", lambda b: b["stalled"], timeout=10)
        took = time.monotonic() - frozen_at
        print(f"frozen worker: stalled=true after {took:.2f} s (STALLED_AFTER={STALLED_AFTER:g} s)")
        assert STALLED_AFTER - 0.5 < took < STALLED_AFTER + 3
        assert stalled["status"] == "PROGRESS"
        r = httpx.get(f"{stack.api}/alltasks", params={"status": "PROGRESS"}, timeout=10)
        assert [t["stalled"] for t in r.json() if t["id"] == task_id] == [True]
    finally:
        child.resume()
    body = wait_ended(stack, task_id, timeout=90)
    assert body["status"] == "SUCCESS" and body["digits"] == PI_10 and body["stalled"] is False
    assert body["attempts"] == 1  # the same delivery went on: nothing was killed


def test_worker_stopped_by_supervisorctl_finishes_its_task_first(stack: FaultStack) -> None:
    """`supervisorctl stop worker` mid-task is a warm shutdown: the running task finishes, once."""
    task_id = start_task(stack, 9)  # ~2 s: well within the worker's stopwaitsecs (10 s)
    wait_running(stack, task_id)
    try:
        assert "stopped" in stack.supervisorctl("stop", "worker").stdout
        body = task(stack, task_id)
    finally:
        assert "started" in stack.supervisorctl("start", "worker").stdout
    assert body["status"] == "SUCCESS" and body["digits"] == "3.141592654", body
    assert body["attempts"] == 1, "the pool process was killed instead of being let finish"
