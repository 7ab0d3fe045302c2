"""The stack through `down` and `up` and through a worker killed inside its container: the state
lives on the named volume, supervisord restarts what dies, and a task in flight still ends with the
right digits."""

from __future__ import annotations

import re
import time

import httpx

from tests.containers.engine import podman, until
from tests.containers.stack import PI_8, PI_10, Stack


def test_a_task_survives_down_and_up(stack: Stack) -> None:
    task_id = stack.start(8)
    assert stack.wait_status(task_id, {"SUCCESS"})["digits"] == PI_8
    stack.compose.down()
    assert not stack.answers(), "the gateway still answers after `down`"
    stack.compose.up()
    until(stack.answers, 180, "GET / after `up` again", interval=0.2)
    again = stack.task(task_id)
    assert (again["status"], again["digits"]) == ("SUCCESS", PI_8), again


def _worker_pid(stack: Stack) -> int | None:
    """The worker's pid while supervisord reports it RUNNING, else None."""
    match = re.search(r"^worker\s+RUNNING\s+pid (\d+)", stack.supervisorctl("status", "worker"), re.M)
    return int(match.group(1)) if match else None


def test_a_killed_worker_is_restarted_and_its_task_ends_with_the_digits(stack: Stack) -> None:
    old = until(lambda: _worker_pid(stack), 60, "the worker RUNNING under supervisord")
    task_id = stack.start(10)
    stack.wait_status(task_id, {"PROGRESS"}, timeout=60)
    # The whole worker, main process and pool at once: supervisord made it a process group leader.
    compute = stack.compose.container("tserver")
    podman("exec", compute, "python", "-c", f"import os, signal; os.killpg({old}, signal.SIGKILL)")
    assert stack.task(task_id)["status"] == "PROGRESS", "the task ended before the kill"
    new = until(lambda: (pid := _worker_pid(stack)) != old and pid, 60, "supervisord to start a new worker")
    assert new != old
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=180)
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_10), done
    assert done["attempts"] >= 2, "the task was not delivered again after the kill"


def test_stopping_the_compute_container_is_orderly_and_its_task_resumes(stack: Stack) -> None:
    """supervisord's stop (the worker's warm shutdown for up to 10 s, then the Thrift server) ends
    before the engine's grace period: the container exits by itself (0), not killed (137)."""
    task_id = stack.start(11)  # about a minute: still running when the stop is asked for
    stack.wait_status(task_id, {"PROGRESS"}, timeout=60)
    compute = stack.compose.container("tserver")
    started = time.monotonic()
    stack.compose.run("stop", "tserver", timeout=120)
    took = time.monotonic() - started
    state = podman("inspect", "--format", "{{.State.ExitCode}}", compute).stdout.strip()
    assert state == "0", f"the compute container was killed after {took:.1f} s (exit {state}), not stopped"
    stack.compose.run("start", "tserver", timeout=120)
    until(stack.answers, 120, "GET / after the compute container started again")
    # The warm shutdown ran out of time: the task goes back to the queue and runs again.
    until(lambda: stack.task(task_id)["attempts"] >= 2, 120, "the stopped task to be delivered again")
    cancelled = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "REVOKED", cancelled.text


def test_the_stack_recovers_by_itself_when_the_broker_restarts(stack: Stack) -> None:
    """The Thrift server's publisher and the worker reconnect on their own: no restart of the compute
    container, no health-check ordering needed (podman-compose ignores `condition: service_healthy`)."""
    compute = stack.compose.container("tserver")
    started_at = podman("inspect", "--format", "{{.State.StartedAt}}", compute).stdout
    stack.compose.run("restart", "rabbitmq", timeout=120)
    task_id = stack.start(8, timeout=180)  # 503 while the broker starts, then 202
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=120)
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_8), done
    assert podman("inspect", "--format", "{{.State.StartedAt}}", compute).stdout == started_at
