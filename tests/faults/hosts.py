"""Simulated hosts on this machine: a Linux network namespace with a veth pair to the machine, and a
private mount namespace in which the test's folders are hidden (a tmpfs over them), so a process run
there has an address of its own and shares no folder with the processes outside.

RabbitMQ and Redis listen on loopback here, so a host reaches them through relays (testing/relay.py)
listening on the machine's side of its veth. Needs root (CI runs as root); where a namespace cannot
be made the test fails saying so.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from testing.relay import Relay


def _ip(*args: str) -> None:
    run = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if run.returncode != 0:
        pytest.fail(
            f"`ip {' '.join(args)}` failed ({run.stderr.strip()}): these tests simulate hosts with "
            "network namespaces and need root with CAP_NET_ADMIN (and iproute2)"
        )


@dataclass
class Host:
    """One simulated host: namespace `name`, reachable at `address`; the machine is `gateway` from it."""

    index: int  # 1..250: its subnet 10.251.<index>.0/30
    name: str = field(default_factory=lambda: f"pih-{uuid.uuid4().hex[:8]}")
    hostname: str = ""
    relays: list[Relay] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def gateway(self) -> str:
        return f"10.251.{self.index}.1"

    @property
    def address(self) -> str:
        return f"10.251.{self.index}.2"

    def create(self) -> None:
        outside, inside = f"{self.name}o", f"{self.name}i"
        _ip("netns", "add", self.name)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", self.name)
        _ip("addr", "add", f"{self.gateway}/30", "dev", outside)
        _ip("link", "set", outside, "up")
        _ip("-n", self.name, "addr", "add", f"{self.address}/30", "dev", inside)
        _ip("-n", self.name, "link", "set", inside, "up")
        _ip("-n", self.name, "link", "set", "lo", "up")

    def reach(self, target: tuple[str, int]) -> tuple[str, int]:
        """An address this host can use for `target` (a server on the machine's loopback)."""
        relay = Relay(target, host=self.gateway)
        self.relays.append(relay)
        return relay.host, relay.port

    def spawn(self, command: list[str], env: dict[str, str], hidden: list[Path], log: Path) -> subprocess.Popen[bytes]:
        """Run `command` on this host, with its own host name and `hidden` folders out of its sight."""
        mounts = " && ".join(f"mount -t tmpfs -o size=1m tmpfs {shlex.quote(str(p))}" for p in hidden)
        script = (
            f"hostname {shlex.quote(self.hostname or self.name)} && {mounts or 'true'} && exec {shlex.join(command)}"
        )
        out = open(log, "ab")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.name,
                "unshare",
                "--mount",
                "--uts",
                "--propagation",
                "private",
                "sh",
                "-c",
                script,
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self.procs.append(proc)
        return proc

    def pids(self) -> list[int]:
        """Every process in this host's network namespace."""
        run = subprocess.run(["ip", "netns", "pids", self.name], capture_output=True, text=True, timeout=10)
        return [int(p) for p in run.stdout.split()]

    def kill(self) -> list[int]:
        """kill -9 of everything running on this host (as a host that loses power)."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for proc in self.procs:
            proc.wait(10)
        return pids

    def destroy(self) -> None:
        self.kill()
        for relay in self.relays:
            relay.close()
        subprocess.run(["ip", "netns", "delete", self.name], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", f"{self.name}o"], capture_output=True, timeout=30)
