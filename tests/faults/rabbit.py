"""A private RabbitMQ node for the tests that stop, restart or freeze the broker.

The machine's RabbitMQ is shared by every test run and must stay up, so these tests start a node of
their own: its own name, AMQP and distribution ports on 127.0.0.1, data and log folders and Erlang
cookie (HOME) in a temporary folder. Only epmd (port 4369) is shared, which is what it is for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest

from testing.waiting import free_port

# Debian's /usr/sbin wrappers re-run the scripts as the rabbitmq user through `su`, which would lose
# this node's environment and could not write its root-owned temporary folder: call the real ones.
_SCRIPTS = Path("/usr/lib/rabbitmq/bin")


def _script(name: str) -> str:
    if (_SCRIPTS / name).exists():
        return str(_SCRIPTS / name)
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is not installed: these tests start a private RabbitMQ node "
            "(Debian: apt-get install rabbitmq-server)"
        )
    return found


@dataclass
class PrivateRabbit:
    """One RabbitMQ node that a test may stop, start again, freeze and thaw."""

    base: Path
    name: str = field(default_factory=lambda: f"pitest-{uuid.uuid4().hex[:10]}@localhost")
    port: int = field(default_factory=free_port)
    dist_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_"))}
        env.update(
            HOME=str(self.base),  # the Erlang cookie of this node and of rabbitmqctl
            RABBITMQ_NODENAME=self.name,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=str(self.base / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.base / "log"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(self.base / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.base / "rabbitmq"),
            # Not /etc/rabbitmq/rabbitmq-env.conf: that one names the machine's node.
            RABBITMQ_CONF_ENV_FILE=str(self.base / "rabbitmq-env.conf"),
            ERL_EPMD_ADDRESS="127.0.0.1",
            ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def start(self, timeout: float = 60) -> float:
        """Start the node (again, on the same data) and wait until AMQP answers; seconds it took."""
        if self.running:
            raise RuntimeError(f"{self.name} is already running")
        self.base.mkdir(parents=True, exist_ok=True)
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        (self.base / "rabbitmq.conf").write_text(
            f"loopback_users = none\nlisteners.tcp.local = 127.0.0.1:{self.port}\n"
        )
        started = time.monotonic()
        with open(self.base / "server.out", "ab") as out:
            self.proc = subprocess.Popen(
                [_script("rabbitmq-server")],
                cwd=self.base,
                env=self.env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = started + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"the private RabbitMQ node {self.name} exited at start:\n{self.log_tail()}")
            if self.answers():
                return time.monotonic() - started
            time.sleep(0.2)
        self.kill()
        pytest.fail(f"the private RabbitMQ node {self.name} did not answer within {timeout} s:\n{self.log_tail()}")

    def answers(self, timeout: float = 1.0) -> bool:
        """True if an AMQP connection can be opened now."""
        from kombu import Connection

        try:
            with Connection(self.url, connect_timeout=timeout) as conn:
                conn.connect()
            return True
        except Exception:  # noqa: BLE001 - any failure means "not answering"
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 30) -> float:
        """Stop the node cleanly (`rabbitmqctl stop`); seconds until its process has exited."""
        if not self.running:
            return 0.0
        assert self.proc is not None
        started = time.monotonic()
        subprocess.run(
            [_script("rabbitmqctl"), "-n", self.name, "stop"],
            env=self.env(),
            cwd=self.base,
            capture_output=True,
            timeout=timeout,
        )
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
        return time.monotonic() - started

    def kill(self) -> None:
        """SIGKILL the node's whole process group."""
        if self.proc is None:
            return
        self.thaw()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)

    def freeze(self) -> None:
        """SIGSTOP the Erlang VM: its sockets stay open and accept connections, but nothing answers."""
        for proc in self._vm():
            proc.suspend()

    def thaw(self) -> None:
        for proc in self._vm():
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.resume()

    def _vm(self) -> list[psutil.Process]:
        if not self.running:
            return []
        assert self.proc is not None
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.base / "server.out").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no output)"
