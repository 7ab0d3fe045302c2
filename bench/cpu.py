"""CPU time spent by each product process, by the bench itself, and by everything else, over one run.

Throughput on two cores is bounded by CPU, so "where the time goes" is first "who burns the
CPU": CPU ms per request for the gateway, the tserver and the worker. And on a shared machine,
the CPU that other processes took during the run says whether a figure can be trusted: it is the
machine's busy time minus the product's and the bench's own (wrk included, as a waited-for child).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import psutil

from bench.stack import processes
from testing.stack import Stack


def _cpu_seconds(procs: dict[str, psutil.Process]) -> dict[str, float]:
    out = {}
    for role, proc in procs.items():
        try:
            t = proc.cpu_times()
            out[role] = t.user + t.system
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def services() -> dict[str, psutil.Process]:
    """RabbitMQ's Erlang VM and redis-server on this machine: part of the system under test (shared
    with whoever else uses them, though)."""
    found: dict[str, psutil.Process] = {}
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == "beam.smp":
            found.setdefault("RabbitMQ", proc)
        elif proc.info["name"] == "redis-server":
            found.setdefault("Redis", proc)
    return found


def _support_seconds(stack: Stack, idle: Iterable[Stack]) -> float:
    """supervisord and its helpers (the log tail), and every process of the other products running
    meanwhile (idle, side by side): neither measured per role nor someone else's."""
    total = 0.0
    supervisord = stack.procs.get("supervisord")
    try:
        if supervisord is not None:
            root = psutil.Process(supervisord.pid)
            for proc in [root, *(c for c in root.children() if "tail" in c.name())]:
                t = proc.cpu_times()
                total += t.user + t.system
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass
    for other in idle:
        if other is stack:
            continue
        procs = processes(other)
        sup = other.procs.get("supervisord")
        try:
            if sup is not None:
                procs["supervisord"] = psutil.Process(sup.pid)
        except psutil.NoSuchProcess:
            pass
        total += sum(_cpu_seconds(procs).values())
    return total


def _own_seconds() -> float:
    """This process and its waited-for children (wrk) so far."""
    t = psutil.Process().cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of all cores so far."""
    t = psutil.cpu_times()
    idle = t.idle + getattr(t, "iowait", 0.0)
    total = sum(t)
    return total - idle, total


class CpuUse:
    """Filled in when the measured block ends."""

    def __init__(self) -> None:
        self.by_role: dict[str, float] = {}  # CPU seconds per product process (and RabbitMQ) during the block
        self.machine_busy = 0.0  # share of all cores' time that was busy, 0..1
        self.others = 0.0  # share of all cores' time taken by processes neither the product's nor ours

    def per_request_ms(self, requests: int) -> dict[str, float]:
        """CPU ms per request for each role (worker roles included: they compete for the same cores)."""
        if not requests:
            return {}
        return {f"{role} CPU ms/req": round(sec * 1e3 / requests, 3) for role, sec in self.by_role.items()}

    def total_ms(self, requests: int) -> float:
        """CPU ms per request of every product process, RabbitMQ and Redis together: what one request costs
        the machine, which bounds req/s on cores the product has to itself, however busy others keep them."""
        return sum(self.per_request_ms(requests).values())

    def columns(self, requests: int) -> dict[str, float]:
        """The raw-table columns of one run."""
        return {
            "cores busy %": round(self.machine_busy * 100),
            "others %": round(self.others * 100),
            **self.per_request_ms(requests),
        }


@contextmanager
def cpu_use(stack: Stack, idle: Iterable[Stack] = ()) -> Iterator[CpuUse]:
    """Measure the CPU time of the stack's processes, of the bench and of the machine over the block;
    `idle`: other products running meanwhile, whose CPU is counted as ours rather than others'."""
    use = CpuUse()
    idle = list(idle)
    procs = {**processes(stack), **services()}
    before, support0, own0, (busy0, total0) = (
        _cpu_seconds(procs),
        _support_seconds(stack, idle),
        _own_seconds(),
        _machine(),
    )
    yield use
    after, support1, own1, (busy1, total1) = (
        _cpu_seconds(procs),
        _support_seconds(stack, idle),
        _own_seconds(),
        _machine(),
    )
    use.by_role = {role: after[role] - before[role] for role in after if role in before}
    if total1 > total0:
        span = total1 - total0
        use.machine_busy = (busy1 - busy0) / span
        ours = sum(use.by_role.values()) + (support1 - support0) + (own1 - own0)
        use.others = max(0.0, (busy1 - busy0) - ours) / span
