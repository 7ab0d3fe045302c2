"""A running compose stack as the tests see it: through its published ports only.

Why HTTP helpers of their own here: the checks must go through the ports the engine publishes on
the host (nothing inside the compose network is reachable from a test), and every request and
wait must be bounded, so that a stuck container fails the stage instead of stalling CI.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.containers.engine import Compose, podman, until
from tests.containers.stacks import StackSpec

#: pi to 8 and 10 decimals, as the README's example and the tests expect them. Up to 8 places a task
#: is computed in one piece; from 9 on it is split into chunks (3 at 9, 7 at 10, 53 at 11) that any
#: worker takes from a queue of their own.
PI_8 = "3.14159265"
PI_10 = "3.1415926536"
#: The supervisord programs that run a Celery worker: whole calculations, and chunks of split ones.
SUPERVISORD_WORKERS = ("worker", "chunks")


@dataclass
class Stack:
    """One compose project brought up by the `stack` fixture."""

    compose: Compose
    spec: StackSpec
    api_port: int
    supervisor_port: int
    supervisor_user: str
    supervisor_password: str

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def supervisor(self) -> str:
        return f"http://127.0.0.1:{self.supervisor_port}"

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.get(self.api + path, timeout=10, **kwargs)

    def answers(self, path: str = "/") -> bool:
        """True when the gateway answers `path` with 200 (False on any error: used in waits)."""
        try:
            return self.get(path).status_code == 200
        except httpx.HTTPError:
            return False

    def start(self, decimal: int, timeout: float = 120) -> str:
        """Queues a calculation and returns its id. Retries while the answer is 503: right after
        `up` the broker may still be starting (the engine may not wait for its health check)."""

        def post() -> str | None:
            response = httpx.post(f"{self.api}/calcpi/{decimal}", timeout=10)
            if response.status_code == 503:
                return None
            assert response.status_code == 202, (response.status_code, response.text)
            task_id: str = response.json()["id"]
            return task_id

        return until(post, timeout, f"POST /calcpi/{decimal} to be accepted (202)", interval=0.5)

    def task(self, task_id: str) -> dict[str, Any]:
        response = self.get(f"/task/{task_id}")
        assert response.status_code == 200, (response.status_code, response.text)
        body: dict[str, Any] = response.json()
        return body

    def wait_status(self, task_id: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        """The task once its status is one of `statuses`; a failure shows its last state."""
        last: dict[str, Any] = {}

        def reached() -> dict[str, Any] | None:
            nonlocal last
            last = self.task(task_id)
            return last if last["status"] in statuses else None

        try:
            return until(reached, timeout, f"task {task_id} to reach {sorted(statuses)}", interval=0.05)
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}; its last state: {last}")

    def supervisorctl(self, *args: str) -> str:
        """supervisorctl inside the compute container (it reads the credentials from the container's
        environment, as an operator's `exec` would)."""
        done = podman(
            "exec",
            self.compose.container("tserver"),
            "supervisorctl",
            "-c",
            "/app/supervisord.conf",
            *args,
            check=False,
            timeout=30,
        )
        return done.stdout

    def worker_containers(self) -> list[str]:
        """The containers that run a Celery worker (the supervisord container's among them)."""
        return [name for service in self.spec.worker_services for name in self.compose.containers_of(service)]

    def ran_on(self, task_id: str) -> list[str]:
        """The containers that computed the task (or chunks of it), from the `hosts` the gateway
        reports: a worker records its host name, which is its container's."""
        hosts = self.task(task_id)["hosts"]
        by_host = {host: name for name, host in self.compose.hostnames(self.worker_containers()).items()}
        unknown = [host for host in hosts if host not in by_host]
        assert not unknown, f"hosts {unknown} of task {task_id} are no worker container's"
        return [by_host[host] for host in hosts]

    def consumers(self) -> dict[str, int]:
        """Consumers RabbitMQ counts on each of our queues (whole calculations, chunks): one per
        Celery worker connected to it."""
        queue = self.compose.env.get("CELERY_QUEUE", "pi")
        queues = {queue: 0, f"{queue}.chunks": 0}
        rabbitmq = self.compose.container("rabbitmq")
        command = ("rabbitmqctl", "-q", "list_queues", "--formatter", "json", "name", "consumers")
        done = podman("exec", rabbitmq, *command, timeout=60, check=False)
        if done.returncode != 0:  # e.g. the broker still starting: a wait (until) asks again
            raise RuntimeError(f"rabbitmqctl list_queues exited {done.returncode}: {done.stderr.strip()[:300]}")
        for row in json.loads(done.stdout):
            if row["name"] in queues:
                queues[row["name"]] = int(row["consumers"])
        return queues

    def wait_consumers(self, count: int | None = None, timeout: float = 120) -> None:
        """Until `count` workers consume from each of our queues; by default, every worker: the
        supervisord container's two (SUPERVISORD_WORKERS) and one per worker container."""
        expected = 1 + len(self.compose.containers_of("worker")) if count is None else count
        until(
            lambda: set(self.consumers().values()) == {expected},
            timeout,
            f"{expected} consumers on each queue",
            interval=1,
        )

    @contextmanager
    def only_the_supervisord_workers(self) -> Iterator[None]:
        """Tasks run in the supervisord container only, for the checks about its workers: the
        worker-only containers (docker-compose.scale.yml) are stopped meanwhile, then started again.
        Nothing to do for a stack without them."""
        others = self.compose.containers_of("worker")
        try:
            if others:
                podman("stop", "-t", "30", *others, timeout=120)
                self.wait_consumers(1)
            yield
        finally:
            if others:
                podman("start", *others, timeout=120)
                self.wait_consumers()

    @contextmanager
    def without_the_supervisord_workers(self) -> Iterator[None]:
        """Tasks run only outside the supervisord container: its Celery workers are stopped with
        supervisorctl meanwhile, then started again."""
        try:
            stopped = self.supervisorctl("stop", *SUPERVISORD_WORKERS)
            assert stopped.count("stopped") == len(SUPERVISORD_WORKERS), stopped
            self.wait_consumers(len(self.compose.containers_of("worker")))
            yield
        finally:
            self.supervisorctl("start", *SUPERVISORD_WORKERS)
            self.wait_consumers()
