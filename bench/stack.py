"""The product under test: testing/stack.py's Stack (the real supervisord.conf, the real gateway),
started in a temporary folder, optionally with state files written before it starts, and the
handles the benchmarks need on it: its processes, its queue, its worker.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil

from testing.waiting import WaitTimeout, wait_for
from testing.stack import Stack

log = logging.getLogger(__name__)

StackTimeout = WaitTimeout

# A tserver indexing 100,000 task files takes seconds before it listens.
_TSERVER_START_SECONDS = 120
_NO_TASK = "00000000-0000-4000-8000-000000000000"


class StackError(RuntimeError):
    """The product could not be started or driven."""


@contextmanager
def running_stack(broker_url: str, label: str, seed: Callable[[Path], object] | None = None) -> Iterator[Stack]:
    """A started product; `seed(state_dir)` runs before anything starts. Its folder is removed after,
    unless starting it failed (its logs are then kept and named)."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{label}-"))
    stack = Stack(root=root, broker_url=broker_url)
    failed = False
    try:
        stack.state_dir.mkdir(parents=True)
        if seed is not None:
            seed(stack.state_dir)
        started = time.monotonic()
        try:
            _start(stack)
        except StackTimeout as exc:
            raise StackError(str(exc)) from None
        log.info("%s: product started in %.1f s (gateway %s, logs in %s)", label, time.monotonic() - started,
                 stack.api, root)
        yield stack
    except BaseException:
        failed = True
        raise
    finally:
        stack.stop()
        if failed:
            log.warning("%s: kept %s for its logs", label, root)
        else:
            shutil.rmtree(root, ignore_errors=True)


def _start(stack: Stack) -> None:
    """Stack.start(), with a wait for the Thrift server to answer before the first task is sent.

    supervisord calls the tserver RUNNING after `startsecs` whether or not it listens yet, and a
    tserver that reads a large state folder at start-up listens only seconds later; Stack's
    readiness check then gets a 503 instead of a task and waits out its 60 s on it.
    """
    for folder in (stack.state_dir, stack.log_dir, stack.root / "run"):
        folder.mkdir(parents=True, exist_ok=True)
    stack.start_supervisord()
    stack.start_gateway()
    deadline = time.monotonic() + _TSERVER_START_SECONDS
    while True:
        try:
            # An unknown task id: 404 is the Thrift server's answer, 503 means it is not there yet.
            if httpx.get(f"{stack.api}/task/{_NO_TASK}", timeout=5).status_code == 404:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise StackError(f"the Thrift server did not answer within {_TSERVER_START_SECONDS} s{stack.logs_hint()}")
        time.sleep(0.2)
    wait_for(stack.worker_ready, 60, "the Celery worker to finish a first task", interval=0.2)


def processes(stack: Stack) -> dict[str, psutil.Process]:
    """The product's processes by role: gateway, tserver, worker (Celery's main), worker child N."""
    found: dict[str, psutil.Process] = {}
    gateway = stack.procs.get("gateway")
    supervisord = stack.procs.get("supervisord")
    try:
        if gateway is not None:
            found["gateway"] = psutil.Process(gateway.pid)
        if supervisord is not None:
            for child in psutil.Process(supervisord.pid).children():
                cmdline = " ".join(child.cmdline())
                if "-m tserver" in cmdline:
                    found["tserver"] = child
                elif "celery" in cmdline and " worker" in cmdline:
                    found["worker"] = child
                    # The prefork pool: one process per WORKER_CONCURRENCY, numbered by pid.
                    for i, pool in enumerate(sorted(child.children(), key=lambda p: p.pid), start=1):
                        found[f"worker child {i}"] = pool
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        pass  # a process went away between two calls: the next discovery finds the new set
    return found


def rss_mb(procs: dict[str, psutil.Process]) -> dict[str, float]:
    """Resident memory of each process now, in MB (10^6 bytes)."""
    out = {}
    for role, proc in procs.items():
        try:
            out[role] = proc.memory_info().rss / 1e6
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return out


def _queue(stack: Stack):  # noqa: ANN202 - kombu objects, imported late like tests/e2e/stack.py does
    from kombu import Connection, Queue

    conn = Connection(stack.broker_url, connect_timeout=5)
    return conn, Queue(stack.queue, channel=conn.channel())


def queue_depth(stack: Stack) -> int:
    """Messages ready in the stack's queue (a passive declare: it never creates the queue)."""
    conn, queue = _queue(stack)
    with conn:
        return queue.queue_declare(passive=True).message_count


def purge_queue(stack: Stack) -> int:
    """Drop every ready message of the stack's queue; how many there were."""
    conn, queue = _queue(stack)
    with conn:
        return queue.purge() or 0


def stop_worker(stack: Stack) -> None:
    """Stop the Celery worker through supervisord (a warm shutdown), as an operator would."""
    out = stack.supervisorctl("stop", "worker")
    if "stopped" not in out.stdout and "not running" not in out.stdout.lower():
        raise StackError(f"supervisorctl stop worker: {out.stdout.strip()} {out.stderr.strip()}")


def start_worker(stack: Stack) -> None:
    """Start the Celery worker again and wait until its pool is there."""
    out = stack.supervisorctl("start", "worker")
    if "started" not in out.stdout and "already started" not in out.stdout:
        raise StackError(f"supervisorctl start worker: {out.stdout.strip()} {out.stderr.strip()}")
    deadline = time.monotonic() + 30
    while not any(role.startswith("worker child") for role in processes(stack)):
        if time.monotonic() > deadline:
            raise StackError("the worker's pool did not come up within 30 s")
        time.sleep(0.1)
