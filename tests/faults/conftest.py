"""Fault-injection tests: the real product (testing/stack.py), a fault, and what a user then sees.

Each module starts stacks of its own, with the settings its faults need, and helpers here find the
processes to kill and check the state files the product leaves behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil
import pytest

from state.records import FINAL_STATUSES, TaskState
from testing.stack import Stack
from testing.waiting import wait_for

PI_10 = "3.1415926536"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/faults/" in str(item.path):
            item.add_marker(pytest.mark.e2e)


@dataclass
class FaultStack(Stack):
    """A Stack whose every process (supervisord's programs and the gateway) gets `settings` too."""

    settings: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        return super().env(**{**self.settings, **extra})

    def worker_ready(self) -> bool:
        if float(self.settings.get("DEMO_MIN_SECONDS", "0")):
            # With a demo pace the first task would take that long: a consumer on the queue will do.
            return queue_consumers(self.broker_url, self.queue) > 0
        return super().worker_ready()


@contextmanager
def running_stack(
    root: Path,
    broker_url: str,
    queue: str | None = None,
    state_backend: str = "files",
    redis_url: str = "",
    **settings: str,
) -> Iterator[FaultStack]:
    """A started FaultStack, stopped (and its queue deleted) on exit."""
    stack = FaultStack(root=root, broker_url=broker_url, settings=settings, state_backend=state_backend)
    if queue is not None:
        stack.queue = queue
    if redis_url:
        stack.redis_url = redis_url
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


def queue_consumers(broker_url: str, queue: str) -> int:
    """Consumers of `queue` (an error if it does not exist yet)."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=3) as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).consumer_count


def queue_depth(broker_url: str, queue: str) -> int:
    """Messages ready in `queue`."""
    from kombu import Connection

    with Connection(broker_url, connect_timeout=3) as conn:
        return conn.default_channel.queue_declare(queue=queue, passive=True).message_count


# -- the REST API ------------------------------------------------------------------------------------


def start_task(stack: Stack, decimal: int) -> str:
    r = httpx.post(f"{stack.api}/calcpi/{decimal}", timeout=10)
    assert r.status_code == 202, r.text
    return r.json()["id"]


def task(stack: Stack, task_id: str) -> dict:
    r = httpx.get(f"{stack.api}/task/{task_id}", timeout=5)
    assert r.status_code == 200, r.text
    return r.json()


def wait_task(stack: Stack, task_id: str, what: str, check: Callable[[dict], bool], timeout: float = 60) -> dict:
    """Poll GET /task/{id} until check(body) holds; the body."""

    def matches() -> dict | None:
        body = task(stack, task_id)
        return body if check(body) else None

    return wait_for(matches, timeout, f"task {task_id} {what}" + stack.logs_hint(), interval=0.05)  # type: ignore[return-value] - wait_for returns the predicate's truthy value, here the body


def wait_ended(stack: Stack, task_id: str, timeout: float = 60) -> dict:
    return wait_task(stack, task_id, "to end", lambda b: b["status"] in FINAL_STATUSES, timeout)


def wait_running(stack: Stack, task_id: str, attempt: int = 1, timeout: float = 30) -> dict:
    return wait_task(
        stack,
        task_id,
        f"to run (attempt {attempt})",
        lambda b: b["status"] == "PROGRESS" and b["attempts"] == attempt,
        timeout,
    )


# -- processes ---------------------------------------------------------------------------------------


def program_pid(stack: Stack, name: str) -> int:
    """The pid supervisord reports for one of its programs (0 if it is not running)."""
    out = stack.supervisorctl("pid", name).stdout.strip()
    assert out.isdigit(), f"supervisorctl pid {name}: {out!r}"
    return int(out)


def program_state(stack: Stack, name: str) -> str:
    """RUNNING, STARTING, BACKOFF, STOPPED, ... as `supervisorctl status` shows it."""
    out = stack.supervisorctl("status", name).stdout.split()
    return out[1] if len(out) > 1 else "?"


def wait_restarted(stack: Stack, name: str, old_pid: int, timeout: float = 30) -> tuple[int, float]:
    """Wait until supervisord runs `name` again under a new pid; (the pid, seconds it took)."""
    started = time.monotonic()
    pid = wait_for(
        lambda: (p := program_pid(stack, name)) not in (0, old_pid) and p,
        timeout,
        f"supervisord to restart {name}" + stack.logs_hint(),
        interval=0.05,
    )
    return pid, time.monotonic() - started  # type: ignore[return-value] - wait_for returns the predicate's truthy value, here the pid


def worker_children(stack: Stack, program: str = "worker") -> list[psutil.Process]:
    """The pool processes of one of the Celery workers (`worker`, or `chunks` for split calculations)."""
    return psutil.Process(program_pid(stack, program)).children(recursive=True)


def chunk_in_progress(stack: Stack, task_id: str, age: tuple[float, float] = (0.05, 0.25)) -> psutil.Process:
    """The chunk worker's pool process that began a chunk of `task_id` between age[0] and age[1] seconds
    ago: past the chunk's record of its start, and far from its end (a chunk takes 0.3 s or more), so
    that a kill -9 now lands mid-chunk. Asked of the worker itself (Celery's remote control, `inspect
    active`): sampling the processes' CPU cannot tell a chunk that is about to finish."""
    from celery import Celery

    app = Celery(broker=stack.broker_url, set_as_current=False)
    name = f"pi-{stack.queue}-chunks@{socket.gethostname()}"
    inspect = app.control.inspect(destination=[name], limit=1, timeout=2)

    def young_chunk() -> psutil.Process | None:
        now = time.time()
        for request in (inspect.active() or {}).get(name, []):
            started = request.get("time_start")
            mine = request["name"] == "worker.calc_chunk" and request["args"][0] == task_id
            if mine and started and age[0] <= now - started <= age[1]:
                return psutil.Process(request["worker_pid"])
        return None

    try:
        return wait_for(young_chunk, 30, f"a chunk of task {task_id} to start", interval=0.01)
    finally:
        app.close()


def computing_child(stack: Stack, sample: float = 0.3) -> psutil.Process:
    """The pool process that is computing (the one burning CPU; with one task running, the others idle)."""

    def busy(proc: psutil.Process) -> float:
        try:
            times = proc.cpu_times()
            return times.user + times.system
        except psutil.NoSuchProcess:
            return 0.0

    children = worker_children(stack)
    assert children, "the worker has no pool processes"
    before = {c.pid: busy(c) for c in children}
    time.sleep(sample)
    used = sorted(((busy(c) - before[c.pid], c) for c in children), key=lambda pair: pair[0], reverse=True)
    top, proc = used[0]
    rest = used[1][0] if len(used) > 1 else 0.0
    assert top > 0.05 and top > 3 * rest, f"no single pool process is computing: {[(p.pid, t) for t, p in used]}"
    return proc


def kill_tree(root: psutil.Process) -> list[int]:
    """SIGKILL a process and all its descendants at once; their pids."""
    procs = [root, *root.children(recursive=True)]
    for proc in procs:
        with suppress(psutil.NoSuchProcess):
            proc.send_signal(signal.SIGKILL)
    psutil.wait_procs(procs, timeout=5)
    return [p.pid for p in procs]


def alive(pids: list[int]) -> list[int]:
    """Those of `pids` that still run (zombies waiting for their parent do not count)."""
    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.NoSuchProcess:
            pass
    return running


# -- state files -------------------------------------------------------------------------------------


def state_file(stack: Stack, task_id: str) -> dict:
    """The task's state file, as the worker last wrote it."""
    return json.loads((stack.state_dir / f"{task_id}.json").read_bytes())


def temp_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if p.name.endswith(".tmp")}


def _writer_alive(name: str) -> bool:
    """Whether the writer of a temporary file (`.<task id>.<pid>.<thread>.tmp`, state/files.py) still runs."""
    try:
        return psutil.pid_exists(int(name.split(".")[2]))
    except (IndexError, ValueError):
        return True


def assert_state_files_sound(folder: Path, writers_running: bool = False) -> int:
    """Every task file parses and names its task; no temporary file is left behind. How many files.

    With writers running, a temporary file may exist for the instant of a write: any seen must be
    gone a moment later. A writer the test killed with kill -9 mid-write leaves its file for the
    housekeeper, which removes it once an hour old (tests/state/test_files_housekeeping.py).
    """
    count = 0
    for path in folder.glob("*.json"):
        state = TaskState.from_json(path.read_bytes())  # ValueError on a torn or corrupt file
        assert path.name == f"{state.id}.json", path
        count += 1
    leftovers = temp_files(folder)
    if leftovers and writers_running:
        time.sleep(1.0)
        leftovers &= temp_files(folder)
    leftovers = {name for name in leftovers if _writer_alive(name)}
    assert not leftovers, f"temporary files left in {folder}: {sorted(leftovers)}"
    return count


def rss_mb(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def send_signal(pid: int, signum: int) -> None:
    with suppress(ProcessLookupError):
        os.kill(pid, signum)
