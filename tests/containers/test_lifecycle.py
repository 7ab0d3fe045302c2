"""Every stack through `down` and `up`, workers killed inside the supervisord container, an orderly
stop of that container and a restart of the broker: the state lives on a named volume (the state
folder's, or Redis's append-only files), supervisord restarts what dies, a task in flight still ends
with the right digits, and everything reconnects by itself.

In the scaled stack, tasks also run in the worker containers: the checks about the supervisord
container's workers (the last two) stop those meanwhile, so that the task they watch runs there."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.containers.engine import podman, until
from tests.containers.stack import PI_8, PI_10, SUPERVISORD_WORKERS, Stack


def test_a_task_survives_down_and_up(stack: Stack) -> None:
    """`down` removes every container; the task comes back from the named volume that holds the
    state (`results`, or `redis-data` where Redis keeps its append-only files)."""
    task_id = stack.start(8)
    assert stack.wait_status(task_id, {"SUCCESS"})["digits"] == PI_8
    service, volume = stack.spec.state_volume
    assert (f"{stack.compose.project}_{volume}", stack.spec.volumes[service][0][1]) in {
        (m["Name"], m["Destination"]) for m in stack.compose.volumes(stack.compose.container(service))
    }
    stack.compose.down()
    assert not stack.answers(), "the gateway still answers after `down`"
    assert stack.compose.containers() == [], "`down` left containers behind"
    assert podman("volume", "exists", f"{stack.compose.project}_{volume}", check=False).returncode == 0
    stack.compose.up()
    until(stack.answers, 180, "GET / after `up` again", interval=0.2)
    again = stack.task(task_id)
    assert (again["status"], again["digits"]) == ("SUCCESS", PI_8), again


def test_a_task_still_queued_survives_down_and_up(stack: Stack) -> None:
    """With no worker consuming, a task waits in RabbitMQ. `down` and `up` keep its message: the
    broker keeps its data on the named volume under its node name, rabbit@<hostname>, and
    docker-compose.yml fixes that host name (a new container would otherwise get a new name, and a
    new, empty broker). Once the workers are back, the task is computed."""
    worker_containers = stack.compose.containers_of("worker")
    if worker_containers:
        podman("stop", "-t", "30", *worker_containers, timeout=120)
    stopped = stack.supervisorctl("stop", *SUPERVISORD_WORKERS)
    assert stopped.count("stopped") == len(SUPERVISORD_WORKERS), stopped
    stack.wait_consumers(0)
    task_id = stack.start(8)
    assert stack.task(task_id)["status"] == "WAITING"
    stack.compose.down()
    stack.compose.up()
    until(stack.answers, 180, "GET / after `up` again", interval=0.2)
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=180)
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_8), done
    stack.wait_consumers()  # every worker back for the checks that follow


def test_the_stack_recovers_by_itself_when_the_broker_restarts(stack: Stack) -> None:
    """The Thrift servers' publishers and every worker reconnect on their own: no other container
    restarts, no health-check ordering needed (podman-compose ignores `condition: service_healthy`)."""
    rabbitmq = stack.compose.container("rabbitmq")
    others = [name for name in stack.compose.containers() if name != rabbitmq]

    def started_at() -> dict[str, str]:
        return {name: podman("inspect", "--format", "{{.State.StartedAt}}", name).stdout for name in others}

    before = started_at()
    stack.compose.run("restart", "rabbitmq", timeout=120)
    task_id = stack.start(8, timeout=180)  # 503 while the broker starts, then 202
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=120)
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_8), done
    stack.wait_consumers()  # every worker consumes again, those of the worker containers too
    assert started_at() == before, "a container other than the broker restarted"


@pytest.fixture(scope="module")
def supervisord_workers_only(stack: Stack) -> Iterator[None]:
    """The stack with its worker containers (scale) stopped, for the checks about the supervisord
    container's workers; started again after the module's last test: once for both checks, as each
    stop and start costs 5-15 s."""
    with stack.only_the_supervisord_workers():
        yield


def _pids(stack: Stack) -> dict[str, int] | None:
    """The pid of each of supervisord's Celery workers while all are RUNNING, else None."""
    status = stack.supervisorctl("status", *SUPERVISORD_WORKERS)
    pids = {name: re.search(rf"^{name}\s+RUNNING\s+pid (\d+)", status, re.M) for name in SUPERVISORD_WORKERS}
    return {name: int(m.group(1)) for name, m in pids.items() if m} if all(pids.values()) else None


@pytest.mark.usefixtures("supervisord_workers_only")
def test_killed_workers_are_restarted_and_their_task_ends_with_the_digits(stack: Stack) -> None:
    """kill -9 of both Celery workers of the supervisord container (whole calculations, chunks) while
    a split task (10 places: 7 chunks) runs there: supervisord starts them again, the chunks in
    flight are delivered again (attempts 2) and the task ends with the digits."""
    old = until(lambda: _pids(stack), 60, "the workers RUNNING under supervisord")
    task_id = stack.start(10)
    stack.wait_status(task_id, {"PROGRESS"}, timeout=60)
    # Each worker whole, main process and pool at once: supervisord made each a process group leader.
    compute = stack.compose.container("tserver")
    kill = "; ".join(f"os.killpg({pid}, signal.SIGKILL)" for pid in old.values())
    podman("exec", compute, "python", "-c", f"import os, signal; {kill}")
    assert stack.task(task_id)["status"] == "PROGRESS", "the task ended before the kill"

    def restarted() -> dict[str, int] | None:
        pids = _pids(stack)
        return pids if pids and set(pids.values()).isdisjoint(old.values()) else None

    until(restarted, 60, "supervisord to start new workers")
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=180)
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_10), done
    assert done["attempts"] >= 2, "no chunk was delivered again after the kill"
    assert stack.ran_on(task_id) == [compute]


@pytest.mark.usefixtures("supervisord_workers_only")
def test_stopping_the_compute_container_is_orderly_and_its_task_resumes(stack: Stack) -> None:
    """supervisord's stop (each worker's warm shutdown for up to 10 s, then the Thrift server) ends
    before the engine's grace period: the container exits by itself (0), not killed (137). The task
    it was computing (11 places: 53 chunks, far from done when the stop comes) carries on after
    `start`, and can still be cancelled."""
    task_id = stack.start(11)
    stack.wait_status(task_id, {"PROGRESS"}, timeout=60)
    compute = stack.compose.container("tserver")
    started = time.monotonic()
    stack.compose.run("stop", "tserver", timeout=120)
    took = time.monotonic() - started
    state = podman("inspect", "--format", "{{.State.ExitCode}}", compute).stdout.strip()
    assert state == "0", f"the compute container was killed after {took:.1f} s (exit {state}), not stopped"
    stack.compose.run("start", "tserver", timeout=120)
    until(stack.answers, 120, "GET / after the compute container started again")
    after_stop = stack.task(task_id)
    assert after_stop["status"] == "PROGRESS", f"the task did not survive the stop: {after_stop}"
    until(
        lambda: stack.task(task_id)["chunks_done"] > after_stop["chunks_done"],
        120,
        "the stopped task's chunks to be computed again",
    )
    cancelled = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "REVOKED", cancelled.text
