"""SIGTERM to the gateway and to supervisord while tasks run and wait, then a restart on the same state
folder and queue: nothing half-written, no process left behind, every task resumes and finishes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

import httpx
import psutil
import pytest

from testing.waiting import wait_for
from tests.e2e.test_routes import rounded_pi
from tests.faults.conftest import (
    FaultStack,
    alive,
    assert_state_files_sound,
    program_pid,
    queue_depth,
    running_stack,
    start_task,
    state_file,
    task,
    wait_ended,
    wait_running,
)

pytestmark = pytest.mark.timeout(240)

# Longer than the worker's stopwaitsecs (10 s), so a running task is still running when supervisord
# gives up waiting for the warm shutdown and kills the worker.
DEMO_SECONDS = "20"


def test_sigterm_to_gateway_and_supervisord_then_restart_resumes_every_task(
    broker_url: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("shutdown")
    first = FaultStack(root=root, broker_url=broker_url, settings={"DEMO_MIN_SECONDS": DEMO_SECONDS})
    try:
        first.start()
        running = {start_task(first, d): d for d in (4, 5)}  # WORKER_CONCURRENCY=2: both run
        for task_id in running:
            wait_running(first, task_id)
        queued = {start_task(first, d): d for d in (2, 3, 6)}
        assert all(task(first, t)["status"] == "WAITING" for t in queued)
        assert queue_depth(broker_url, first.queue) == 3

        # The gateway, with a client keeping a connection open and another reading in a loop.
        stop_reading = threading.Event()
        read_errors: list[str] = []

        def reader() -> None:
            with httpx.Client(base_url=first.api, timeout=5) as client:
                while not stop_reading.is_set():
                    try:
                        client.get(f"/task/{next(iter(running))}")
                    except httpx.HTTPError as exc:
                        read_errors.append(type(exc).__name__)
                        return

        reading = threading.Thread(target=reader)
        reading.start()
        idle = httpx.Client(base_url=first.api, timeout=5)
        try:
            assert idle.get("/livez").status_code == 200
            time.sleep(0.3)
            gateway = first.procs.pop("gateway")
            gateway.send_signal(signal.SIGTERM)
            started = time.monotonic()
            code = gateway.wait(10)
            took = time.monotonic() - started
        finally:
            stop_reading.set()
            reading.join(10)
            idle.close()
        print(f"gateway: SIGTERM to exit {took:.2f} s (exit code {code}) with an idle keep-alive client")
        # uvicorn re-raises the signal once it has shut down cleanly: -SIGTERM is a clean exit.
        assert code in (0, -signal.SIGTERM) and took < 8
        assert "Application shutdown complete" in (root / "gateway.out").read_text(), "no graceful shutdown"
        assert_state_files_sound(first.state_dir, writers_running=True)

        # supervisord: the Thrift server stops, the worker's warm shutdown outlasts stopwaitsecs and
        # its whole process group is killed; the running tasks' messages go back to the queue.
        supervisord = first.procs.pop("supervisord")
        tree = [p.pid for p in psutil.Process(supervisord.pid).children(recursive=True)] + [supervisord.pid]
        supervisord.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            code = supervisord.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(supervisord.pid, signal.SIGKILL)
            pytest.fail("supervisord did not exit within 30 s of SIGTERM")
        took = time.monotonic() - started
        print(f"supervisord: SIGTERM to exit {took:.1f} s, {len(tree)} processes")
        assert not alive(tree), f"processes outlived supervisord: {alive(tree)}"
    except BaseException:
        first.stop()
        raise

    assert assert_state_files_sound(first.state_dir) == len(running) + len(queued)
    assert all(state_file(first, t)["status"] == "PROGRESS" for t in running), "a running task ended early"
    assert all(state_file(first, t)["status"] == "WAITING" for t in queued)
    assert wait_for(lambda: queue_depth(broker_url, first.queue) == 5, 10, "the running tasks' messages to return")

    # A new product on the same folder and queue, without the demo pace.
    with running_stack(root, broker_url, queue=first.queue) as second:
        bodies = {t: wait_ended(second, t, timeout=60) for t in [*running, *queued]}
        for task_id, decimal in {**running, **queued}.items():
            body = bodies[task_id]
            assert body["status"] == "SUCCESS" and body["digits"] == rounded_pi(decimal), body
            assert body["attempts"] == (2 if task_id in running else 1), body
        assert_state_files_sound(second.state_dir, writers_running=True)
        assert program_pid(second, "tserver") > 0
