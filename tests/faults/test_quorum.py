"""CELERY_QUEUE_TYPE=quorum against the machine's RabbitMQ (a quorum queue works on one node): both
queues are declared quorum, whole and split tasks run, and a worker killed mid-chunk hands its chunk
back (attempts 2): our count of deliveries, not the broker's delivery limit, decides."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest
from kombu import Connection

from tests.faults.conftest import FaultStack, chunk_in_progress, running_stack, start_task, wait_ended, wait_task

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    # d=10 (2.5e10 terms) is split into 13 chunks of 2e9; d=5 runs whole.
    with running_stack(
        tmp_path_factory.mktemp("quorum"),
        broker_url,
        CELERY_QUEUE_TYPE="quorum",
        SPLIT_MIN_TERMS="1000000000",
        SPLIT_CHUNK_TERMS="2000000000",
    ) as s:
        yield s


def _queue_type(broker_url: str, queue: str) -> str:
    # A passive declaration with the other type's arguments is refused: that tells the type.
    with Connection(broker_url, connect_timeout=3) as conn:
        try:
            conn.default_channel.queue_declare(
                queue=queue, durable=True, auto_delete=False, exclusive=False, arguments={"x-queue-type": "quorum"}
            )
        except Exception:  # noqa: BLE001 - PRECONDITION_FAILED: not a quorum queue
            return "classic"
    return "quorum"


def test_both_queues_are_quorum_queues(stack: FaultStack) -> None:
    assert _queue_type(stack.broker_url, stack.queue) == "quorum"
    assert _queue_type(stack.broker_url, f"{stack.queue}.chunks") == "quorum"


def test_a_whole_task_runs(stack: FaultStack) -> None:
    assert wait_ended(stack, start_task(stack, 5))["digits"] == "3.14159"


def test_a_chunks_worker_killed_mid_chunk_hands_the_chunk_back(stack: FaultStack) -> None:
    task_id = start_task(stack, 10)
    wait_task(stack, task_id, "a chunk to finish", lambda b: b["chunks_done"] >= 1, timeout=60)
    chunk_in_progress(stack, task_id).send_signal(signal.SIGKILL)
    done = wait_ended(stack, task_id, timeout=120)
    assert done["status"] == "SUCCESS" and done["digits"] == "3.1415926536" and done["attempts"] == 2, done
