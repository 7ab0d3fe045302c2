"""A split calculation under faults and load, through the real product: cancelled (REVOKED within a
second, its queued chunks revoked), a chunk's worker killed with kill -9 (the chunk is delivered
again, the digits are right), a chunk whose workers keep dying (the task fails saying so), a small
task started behind a big job's queue of chunks (done within a second), and ten readers at once
(the progress never goes back)."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from testing.waiting import wait_for
from tests.faults.conftest import (
    FaultStack,
    chunk_in_progress,
    queue_depth,
    running_stack,
    start_task,
    task,
    wait_ended,
    wait_task,
)

pytestmark = pytest.mark.timeout(300)
# Chunks of 2e9 terms take ~0.3-0.7 s on our machines; d=10 (2.5e10 terms) is 13 of them, d=11 105.
SPLIT = {"SPLIT_MIN_TERMS": "1000000000", "SPLIT_CHUNK_TERMS": "2000000000"}
PI_10 = "3.1415926536"


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(tmp_path_factory.mktemp("split-faults"), broker_url, MAX_DECIMAL="12", **SPLIT) as s:
        yield s


def chunks_running(stack: FaultStack, task_id: str, done: int = 1) -> dict:
    return wait_task(
        stack,
        task_id,
        f"{done} chunks to finish",
        lambda b: b["status"] == "PROGRESS" and b["chunks_done"] >= done,
        timeout=60,
    )


def test_cancel_revokes_a_split_task_within_a_second(stack: FaultStack) -> None:
    task_id = start_task(stack, 11)
    chunks_running(stack, task_id, done=2)
    started = time.monotonic()
    r = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
    took = time.monotonic() - started
    assert r.status_code == 200 and r.json()["status"] == "REVOKED", r.text
    assert took < 1.0, took
    print(f"split task cancelled: REVOKED in {took * 1000:.0f} ms")
    # Its chunks are revoked or skipped: the chunk queue drains and no chunk finishes any more.
    wait_for(lambda: queue_depth(stack.broker_url, f"{stack.queue}.chunks") == 0, 30, "the chunk queue to drain")
    done = task(stack, task_id)["chunks_done"]
    time.sleep(1.5)
    assert task(stack, task_id)["chunks_done"] == done and task(stack, task_id)["status"] == "REVOKED"


def test_a_small_task_is_not_kept_waiting_by_a_big_jobs_chunks(stack: FaultStack) -> None:
    big = start_task(stack, 12)  # ~850 chunks: the chunk queue is full for minutes
    try:
        chunks_running(stack, big, done=1)
        # The group is still being published while the first chunks run: wait for the queue to fill.
        chunks = f"{stack.queue}.chunks"
        wait_for(lambda: queue_depth(stack.broker_url, chunks) > 100, 30, "the big job's chunks to fill the queue")
        started = time.monotonic()
        small = start_task(stack, 3)
        done = wait_ended(stack, small, timeout=30)
        took = time.monotonic() - started
        assert done["digits"] == "3.142"
        print(f"d=3 behind a d=12 job: done in {took * 1000:.0f} ms")
        assert took < 1.0, took
    finally:
        # Also when an assertion failed: its chunks must not keep the workers busy for the next tests.
        assert httpx.delete(f"{stack.api}/task/{big}", timeout=10).json()["status"] == "REVOKED"


def test_a_chunks_worker_killed_mid_chunk_and_ten_readers(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    seen: dict[int, list[tuple[float, str]]] = {i: [] for i in range(10)}
    stop = threading.Event()

    def reader(i: int) -> None:
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                body = client.get(f"{stack.api}/task/{task_id}").json()
                seen[i].append((body["progress"], body["status"]))
                if body["status"] in ("SUCCESS", "FAILURE", "REVOKED"):
                    return
                time.sleep(0.02)

    readers = [threading.Thread(target=reader, args=(i,)) for i in range(10)]
    for t in readers:
        t.start()
    try:
        chunks_running(stack, task_id, done=1)
        chunk_in_progress(stack, task_id).send_signal(signal.SIGKILL)
        done = wait_ended(stack, task_id, timeout=120)
        # Each reader returns once it has seen the task end itself (stopping them now would cut off a
        # reader whose last read came just before the end).
        deadline = time.monotonic() + 10
        for t in readers:
            t.join(max(0.0, deadline - time.monotonic()))
    finally:
        stop.set()
        for t in readers:
            t.join(10)
    assert done["status"] == "SUCCESS" and done["digits"] == PI_10, done
    assert done["attempts"] == 2, "the killed chunk was delivered again"
    for i, values in seen.items():
        progress = [p for p, _ in values]
        assert progress == sorted(progress), f"reader {i} saw the progress go back: {progress}"
        assert all(p < 100 for p, s in values if s != "SUCCESS") and values[-1] == (100.0, "SUCCESS"), i


def test_a_chunk_whose_workers_keep_dying_fails_its_task(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_stack(tmp_path_factory.mktemp("split-attempts"), broker_url, TASK_MAX_ATTEMPTS="1", **SPLIT) as stack:
        task_id = start_task(stack, 10)
        chunks_running(stack, task_id, done=1)
        chunk_in_progress(stack, task_id).send_signal(signal.SIGKILL)
        done = wait_ended(stack, task_id, timeout=120)
    assert done["status"] == "FAILURE", done
    assert "was delivered 2 times; its worker died each time" in done["error"], done["error"]
