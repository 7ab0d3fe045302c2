"""Starts the real product for end-to-end tests: supervisord with the real supervisord.conf (Thrift
server + Celery worker) and the gateway, on free ports, against the machine's RabbitMQ, with a
queue, a state folder and log folder of their own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from testing.waiting import WaitTimeout, free_port, wait_for

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """A running product and the means to look inside it."""

    root: Path
    broker_url: str
    queue: str = field(default_factory=lambda: f"test-{uuid.uuid4().hex[:12]}")
    api_port: int = field(default_factory=free_port)
    tserver_port: int = field(default_factory=free_port)
    supervisor_port: int = field(default_factory=free_port)
    tserver_metrics_port: int = field(default_factory=free_port)
    worker_metrics_port: int = field(default_factory=free_port)
    user: str = "tester"
    password: str = field(default_factory=lambda: uuid.uuid4().hex)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    #: More environment for every process it starts (e.g. DEMO_MIN_SECONDS for the dashboard tests).
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Where task state lives: "files" (state_dir) or "redis" (redis_url, under a key prefix of its own).
    state_backend: str = "files"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = field(default_factory=lambda: f"pitest-{uuid.uuid4().hex[:12]}:")

    @property
    def state_dir(self) -> Path:
        return self.root / "results"

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    @property
    def disk_path(self) -> str:
        """The folder whose disk GET / reports: the state folder, or / when state is in Redis."""
        return str(self.state_dir.resolve()) if self.state_backend == "files" else "/"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def supervisor_url(self) -> str:
        return f"http://127.0.0.1:{self.supervisor_port}"

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            BROKER_URL=self.broker_url,
            CELERY_QUEUE=self.queue,
            STATE_DIR=str(self.state_dir),
            TSERVER_HOST="127.0.0.1",
            TSERVER_PORT=str(self.tserver_port),
            API_HOST="127.0.0.1",
            API_PORT=str(self.api_port),
            WORKER_CONCURRENCY="2",
            SUPERVISOR_HOST="127.0.0.1",
            SUPERVISOR_PORT=str(self.supervisor_port),
            SUPERVISOR_USER=self.user,
            SUPERVISOR_PASSWORD=self.password,
            LOG_DIR=str(self.log_dir),
            RUN_DIR=str(self.root / "run"),
            PYTHONUNBUFFERED="1",
            STATE_BACKEND=self.state_backend,
            REDIS_URL=self.redis_url,
            REDIS_KEY_PREFIX=self.redis_prefix,
            TSERVER_METRICS_PORT=str(self.tserver_metrics_port),
            WORKER_METRICS_PORT=str(self.worker_metrics_port),
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def start(self) -> None:
        for folder in (self.state_dir, self.log_dir, self.root / "run"):
            folder.mkdir(parents=True, exist_ok=True)
        try:
            self.start_supervisord()
            self.start_gateway()
            wait_for(self.worker_ready, 60, "the Celery worker to finish a first task", interval=0.2)
        except WaitTimeout as exc:
            raise WaitTimeout(f"{exc}\n{self.log_tails()}") from None

    def start_supervisord(self) -> None:
        self._spawn("supervisord", [str(BIN / "supervisord"), "-c", str(REPO / "supervisord.conf")])
        wait_for(
            lambda: self.supervisorctl("status", "tserver").stdout.count("RUNNING"),
            30,
            "supervisord to report tserver RUNNING" + self.logs_hint(),
            interval=0.2,
        )

    def start_gateway(self) -> None:
        self._spawn("gateway", [sys.executable, "-m", "app"])
        wait_for(
            lambda: httpx.get(self.api + "/openapi.json", timeout=1).status_code == 200,
            30,
            "the gateway to answer" + self.logs_hint(),
        )

    def worker_ready(self) -> bool:
        """True once a first task has run; False (try again) while the compute side is still starting."""
        r = httpx.post(self.api + "/calcpi/1", timeout=10)
        if r.status_code != 202:
            return False
        task_id = r.json()["id"]
        return bool(
            wait_for(
                lambda: httpx.get(f"{self.api}/task/{task_id}", timeout=5).json()["status"] == "SUCCESS",
                60,
                "the first task to succeed" + self.logs_hint(),
                interval=0.1,
            )
        )

    def supervisorctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(BIN / "supervisorctl"), "-c", str(REPO / "supervisord.conf"), *args]
        return subprocess.run(cmd, env=self.env(), capture_output=True, text=True, timeout=30)

    def stop_gateway(self) -> None:
        self._stop("gateway")

    def stop(self) -> None:
        self._stop("gateway")
        self._stop("supervisord", timeout=30)
        self.delete_queue()
        if self.state_backend == "redis":
            self.delete_redis_keys()

    def redis_documents(self) -> dict[str, bytes]:
        """Every task document under this stack's prefix, by task id."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}task:*", count=1000))
            values = client.mget(keys) if keys else []
            # bytes: the client is made without decode_responses
            return {k.decode().rsplit(":", 1)[1]: v for k, v in zip(keys, values, strict=True) if isinstance(v, bytes)}
        finally:
            client.close()

    def delete_redis_keys(self) -> None:
        """Remove every key under this stack's prefix."""
        import redis

        client = redis.Redis.from_url(self.redis_url, socket_connect_timeout=3)
        try:
            keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
            if keys:
                client.delete(*keys)
        finally:
            client.close()

    def delete_queue(self) -> None:
        from kombu import Connection, Queue

        with Connection(self.broker_url, connect_timeout=3) as conn:
            Queue(self.queue, channel=conn.channel()).delete()

    def logs_hint(self) -> str:
        return f" (logs in {self.log_dir} and {self.root})"

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of each of its log files: what a failure report carries, since a CI
        machine's temporary folders are gone by the time anyone reads it."""
        parts = []
        for path in sorted([*self.root.glob("*.out"), *self.log_dir.glob("*.log")]):
            tail = path.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)

    def _spawn(self, name: str, cmd: list[str]) -> None:
        out = open(self.root / f"{name}.out", "ab")  # noqa: SIM115 - closed with the process
        self.procs[name] = subprocess.Popen(
            cmd, cwd=REPO, env=self.env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        out.close()

    def _stop(self, name: str, timeout: float = 15) -> None:
        proc = self.procs.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextmanager
def running_stack(
    root: Path, broker_url: str, state_backend: str = "files", redis_url: str = "", **extra_env: str
) -> Iterator[Stack]:
    """A started Stack (with `extra_env` for every process), stopped and cleaned up on exit."""
    stack = Stack(root=root, broker_url=broker_url, extra_env=dict(extra_env), state_backend=state_backend)
    if redis_url:
        stack.redis_url = redis_url
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()
