"""A running compose stack as the tests see it: through its published ports only.

Why HTTP helpers of their own here: the checks must go through the ports the engine publishes on
the host (nothing inside the compose network is reachable from a test), and every request and
wait must be bounded, so that a stuck container fails the stage instead of stalling CI.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.containers.engine import Compose, podman, until

#: pi to 8 and 10 decimals, as the README's example and the kill test expect them.
PI_8 = "3.14159265"
PI_10 = "3.1415926536"


@dataclass
class Stack:
    """One compose project brought up by the `stack` fixture."""

    compose: Compose
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
