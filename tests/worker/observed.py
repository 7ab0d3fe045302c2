"""Helpers for watching a real Celery worker from a test: the worker as a subprocess on queues of its own,
a message published as the Thrift server builds it (app.amqp.as_task_v2, with extra headers), and an
OTLP/HTTP receiver that keeps the spans the worker exports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kombu import Connection, Exchange, Queue
from kombu.serialization import dumps

from testing.otlp import OtlpSink, Span
from testing.waiting import wait_for

__all__ = ["REPO", "OtlpSink", "Span", "WorkerRun", "publish_calc_pi"]

REPO = Path(__file__).resolve().parents[2]


@dataclass
class WorkerRun:
    """A `celery -A worker.app worker` subprocess on queue `queue` (and its chunk queue)."""

    root: Path
    broker_url: str
    queue: str = field(default_factory=lambda: f"test-obs-{uuid.uuid4().hex[:12]}")
    env: dict[str, str] = field(default_factory=dict)
    #: "files" (in state_dir), or "redis" (redis_url, under a key prefix of its own)
    backend: str = "files"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = field(default_factory=lambda: f"pitest-obs-{uuid.uuid4().hex[:12]}:")
    proc: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.root / "worker.log"

    @property
    def state_dir(self) -> Path:
        return self.root / "results"

    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PROMETHEUS_"))}
        env.update(
            BROKER_URL=self.broker_url,
            CELERY_QUEUE=self.queue,
            PYTHONUNBUFFERED="1",
            WORKER_METRICS_PORT="0",
            **self.state_env(),
        )
        env.update(self.env)
        return env

    def state_env(self) -> dict[str, str]:
        return {
            "STATE_BACKEND": self.backend,
            "STATE_DIR": str(self.state_dir),
            "REDIS_URL": self.redis_url,
            "REDIS_KEY_PREFIX": self.redis_prefix,
        }

    def store(self) -> Any:
        """The worker's state store, opened here as the worker opens it."""
        from state.backends import open_store
        from state.config import StateSettings

        return open_store(StateSettings(**self.state_env()))  # type: ignore[arg-type] - settings from the environment's strings, as pydantic reads them

    def write_waiting(self, task_id: str, decimal: int) -> None:
        """The task's WAITING record, as the Thrift server writes it before it publishes."""
        from state.records import WAITING, TaskState, utcnow

        self.store().write(TaskState(id=task_id, status=WAITING, decimal=decimal, pushqtime=utcnow()))

    def read_state(self, task_id: str) -> Any:
        return self.store().read(task_id)

    def command(self, concurrency: int = 2) -> list[str]:
        return [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "worker.app",
            "worker",
            "--loglevel=INFO",
            f"--queues={self.queue},{self.queue}.chunks",
            f"--concurrency={concurrency}",
            f"--hostname=test-{self.queue}@%h",
            "--without-gossip",
            "--without-mingle",
        ]

    def start(self, concurrency: int = 2) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                self.command(concurrency),
                cwd=REPO,
                env=self.environment(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for(
            lambda: b" ready." in self.log.read_bytes() or b'ready."' in self.log.read_bytes(),
            60,
            f"the worker to be ready (log: {self.log})",
            interval=0.1,
        )

    def stop(self) -> None:
        """A warm shutdown (what flushes the spans the pool processes still hold)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def clean_up(self) -> None:
        """Delete its queues (and its Redis keys)."""
        with Connection(self.broker_url, connect_timeout=3) as conn:
            for name in (self.queue, f"{self.queue}.chunks"):
                Queue(name, channel=conn.channel()).delete()
        if self.backend == "redis":
            import redis

            client = redis.Redis.from_url(self.redis_url)
            try:
                keys = list(client.scan_iter(match=f"{self.redis_prefix}*", count=1000))
                if keys:
                    client.delete(*keys)
            finally:
                client.close()


def publish_calc_pi(broker_url: str, queue: str, task_id: str, decimal: int, headers: dict[str, str]) -> None:
    """Publish calc_pi(task_id, decimal) as the Thrift server does: the message built by Celery's
    `as_task_v2`, `headers` added to the headers dict it returns."""
    from worker.app import app

    args = (task_id, decimal)
    message_headers, properties, body, _ = app.amqp.as_task_v2(
        task_id, "worker.calc_pi", args=args, kwargs={}, ignore_result=True, argsrepr=repr(args), kwargsrepr="{}"
    )
    message_headers.update(headers)
    content_type, encoding, data = dumps(body, serializer="json")
    with Connection(broker_url, connect_timeout=3) as conn:
        producer = conn.Producer()
        producer.publish(
            data,
            exchange="",
            routing_key=queue,
            headers=message_headers,
            content_type=content_type,
            content_encoding=encoding,
            delivery_mode=2,
            retry=False,
            declare=[Queue(queue, Exchange(queue), routing_key=queue)],
            **properties,
        )
