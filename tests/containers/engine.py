"""The container engine as the container test stage drives it: podman and podman-compose.

Why a module of its own: every call must be bounded (a hung engine must fail the stage, not stall
CI), every compose call must get the same environment (the passwords and the published ports: each
call is a process of its own), and teardown must remove exactly what one project made, also the
anonymous volumes that `podman-compose down -v` leaves behind.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest

REPO = Path(__file__).resolve().parents[2]
HOW_TO_GET_ONE = (
    "run `make test-containers`: as root on Debian 12 it installs podman, runc, netavark, aardvark-dns "
    "and podman-compose, writes podman's settings and prepares the base images (see docs/containers.md)"
)
#: Labels podman-compose puts on what it creates for a project.
PROJECT_LABEL = "io.podman.compose.project"
SERVICE_LABEL = "com.docker.compose.service"

T = TypeVar("T")


def until(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `check` until it returns something truthy and return it; fail naming `what` (and the
    last error `check` raised) after `timeout` seconds. Every wait of the stage goes through here."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - any error of a check is reported when the wait fails
            last = exc
        if time.monotonic() >= deadline:
            pytest.fail(
                f"timed out after {timeout:.0f} s waiting for {what}" + (f" (last error: {last!r})" if last else "")
            )
        time.sleep(interval)


def engine_environment() -> dict[str, str]:
    """os.environ plus podman's settings for this stage (CONTAINERS_CONF...), written by
    containers/engine.sh when `make test-containers` did not already export them."""
    env = dict(os.environ)
    if "CONTAINERS_CONF" not in env:
        out = subprocess.run(
            [
                "bash",
                "-c",
                'source containers/engine.sh && printf "%s\\n%s" "$CONTAINERS_CONF" "$CONTAINERS_REGISTRIES_CONF"',
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout.split("\n")
        env["CONTAINERS_CONF"], env["CONTAINERS_REGISTRIES_CONF"] = out[0], out[1]
    return env


def compose_executable() -> str | None:
    """podman-compose: the one installed beside this Python (the project's venv), else on PATH."""
    beside = Path(sys.executable).parent / "podman-compose"
    return str(beside) if beside.exists() else shutil.which("podman-compose")


def require_engine() -> None:
    """A clear failure, never a skip, when podman or podman-compose is missing or does not work."""
    if shutil.which("podman") is None:
        pytest.fail(f"podman is not installed: {HOW_TO_GET_ONE}")
    if compose_executable() is None:
        pytest.fail(f"podman-compose is not installed: {HOW_TO_GET_ONE}")
    info = podman("info", "--format", "{{.Host.OCIRuntime.Name}}", check=False, timeout=60)
    if info.returncode != 0:
        pytest.fail(f"podman does not work here ({info.stderr.strip()[-400:]}): {HOW_TO_GET_ONE}")


def podman(
    *args: str, timeout: float = 120, check: bool = True, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """One podman command, bounded by `timeout`; with `check`, a failure names the command and its output."""
    return _run(["podman", *args], timeout, check, env or engine_environment())


def _run(cmd: list[str], timeout: float, check: bool, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"`{' '.join(cmd)}` did not finish within {timeout:.0f} s")
    if check and done.returncode != 0:
        pytest.fail(f"`{' '.join(cmd)}` exited {done.returncode}:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


@dataclass
class Compose:
    """One compose project: the files it runs, its unique name, and the environment of every call."""

    project: str
    files: tuple[str, ...]
    env: dict[str, str] = field(default_factory=dict)
    #: Extra arguments of every `up` and `down` (see StackSpec: `--scale`, `--remove-orphans`).
    up_args: tuple[str, ...] = ()
    down_args: tuple[str, ...] = ()
    #: Every volume a container of the project mounted, noted before each `down`: what `down`
    #: leaves (anonymous volumes) is removed at teardown.
    mounted: set[str] = field(default_factory=set)

    def run(self, *args: str, timeout: float = 180, check: bool = True) -> subprocess.CompletedProcess[str]:
        exe = compose_executable() or "podman-compose"
        files = [arg for name in self.files for arg in ("-f", name)]
        return _run([exe, "-p", self.project, *files, *args], timeout, check, {**engine_environment(), **self.env})

    def up(self) -> None:
        self.run("up", "-d", *self.up_args)

    def down(self) -> None:
        """Stops and removes the containers, keeps the volumes (what a user's `down` does)."""
        self.note_volumes()
        self.run("down", *self.down_args, timeout=120)

    def volumes(self, container: str) -> list[dict[str, str]]:
        """The volume mounts of a container: [{"Name": ..., "Destination": ...}, ...]."""
        mounts = json.loads(podman("inspect", "--format", "{{json .Mounts}}", container, check=False).stdout or "[]")
        return [m for m in mounts or [] if m.get("Type") == "volume"]

    def note_volumes(self) -> None:
        for name in self._ps():
            self.mounted.update(m["Name"] for m in self.volumes(name))

    def container(self, service: str) -> str:
        """The name of the container of `service` (the first, if scaled)."""
        names = self.containers_of(service)
        if not names:
            pytest.fail(f"no container of service {service!r} in project {self.project}")
        return names[0]

    def containers_of(self, service: str) -> list[str]:
        """Every container of `service` (its replicas, if scaled), running or not."""
        return self._ps("--filter", f"label={SERVICE_LABEL}={service}")

    def containers(self) -> list[str]:
        return self._ps()

    def service_of(self, container: str) -> str:
        label = f'{{{{ index .Config.Labels "{SERVICE_LABEL}" }}}}'
        return podman("inspect", "--format", label, container).stdout.strip()

    def hostname(self, container: str) -> str:
        return self.hostnames([container])[container]

    def hostnames(self, containers: list[str]) -> dict[str, str]:
        """{container: its host name} in one engine call (a container's host name is its short id)."""
        out = podman("inspect", "--format", "{{.Name}} {{.Config.Hostname}}", *containers).stdout
        return dict(line.split() for line in out.splitlines() if line.strip())

    def logs(self, container: str) -> str:
        """Everything the container wrote, stdout and stderr (Celery logs to stderr)."""
        done = podman("logs", container, check=False, timeout=60)
        return done.stdout + done.stderr

    def _ps(self, *filters: str) -> list[str]:
        out = podman(
            "ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}", *filters, "--format", "{{.Names}}"
        ).stdout
        return sorted(out.split())

    def published(self, container: str) -> dict[str, list[str]]:
        """{container port: [host address:port, ...]} as the engine publishes them."""
        ports = json.loads(podman("inspect", "--format", "{{json .NetworkSettings.Ports}}", container).stdout) or {}
        return {
            port: [f"{b['HostIp'] or '0.0.0.0'}:{b['HostPort']}" for b in binds or []]
            for port, binds in ports.items()
            if binds
        }

    def diagnostics(self, lines: int = 40) -> str:
        """The state and the last log lines of every container of the project, for a failure message."""
        out = [podman("ps", "-a", "--filter", f"label={PROJECT_LABEL}={self.project}", check=False).stdout]
        for name in self._ps():
            logs = podman("logs", "--tail", str(lines), name, check=False)
            out.append(f"--- {name} ---\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)

    def teardown(self) -> None:
        """Removes everything the project made: its containers killed and removed with their anonymous
        volumes (podman-compose's `down -v` keeps those), then `down -v`, then whatever it left: named
        volumes, networks and the pod. Killed, not stopped: the orderly stops are checked by the tests,
        and a `down` here costs 15-30 s a stack (podman-compose stops every service at once, and a
        Celery worker whose broker went first waits out its grace period). Every step runs even when
        one before it failed, and nothing of another project is touched (all is found by the
        project's label or its containers)."""
        label = f"label={PROJECT_LABEL}={self.project}"

        def listed(*args: str) -> list[str]:
            return podman(*args, "--filter", label, check=False).stdout.split()

        steps: list[Callable[[], object]] = [
            self.note_volumes,
            lambda: _remove("container", listed("ps", "-aq"), "-t", "0", "-v", "--depend"),
            lambda: self.run("down", "-v", *self.down_args, timeout=120, check=False),
            lambda: _remove("container", listed("ps", "-aq"), "-v", "--depend"),
            lambda: _remove("volume", sorted(self.mounted | set(listed("volume", "ls", "-q")))),
            lambda: _remove("network", listed("network", "ls", "-q")),
            lambda: _remove("pod", listed("pod", "ps", "-q")),
        ]
        failures = []
        for step in steps:
            try:
                step()
            except BaseException as exc:  # noqa: BLE001 - pytest.fail too: the next steps still run
                failures.append(repr(exc))
        if failures:
            pytest.fail(f"teardown of {self.project} was incomplete: {failures}")


def _remove(kind: str, names: list[str], *flags: str) -> None:
    if names:
        podman(kind, "rm", "-f", *flags, *names, timeout=120, check=False)
