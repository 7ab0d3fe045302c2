"""The product under test: testing/stack.py's Stack (the real supervisord.conf, the real gateway),
started in a temporary folder on the files or the Redis backend with extra settings, optionally
with tasks written into its store before it starts, and the handles the benchmarks need on it:
its processes, its queues, its worker programs.

What testing/stack.py lacks and this module adds: a wait for a Thrift server still indexing a large
state folder (its readiness check would wait out 60 s on 503s), ports of their own for the Thrift
server's and the worker's metrics listeners (products side by side must not compete for the default
ones), the `chunks` program among the processes found, and its queue deleted at the end.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import psutil

from testing.stack import Stack
from testing.waiting import WaitTimeout, free_port, wait_for

log = logging.getLogger(__name__)

StackTimeout = WaitTimeout

# A tserver indexing 100,000 task files takes seconds before it listens.
_TSERVER_START_SECONDS = 120
_NO_TASK = "00000000-0000-4000-8000-000000000000"
#: The supervisord programs that run Celery workers: whole calculations, and the chunks of split ones.
WORKER_PROGRAMS = ("worker", "chunks")


class StackError(RuntimeError):
    """The product could not be started or driven."""


def make_stack(broker_url: str, root: Path, backend: str = "files", env: dict[str, str] | None = None) -> Stack:
    """A Stack (not started) on `backend` with `env` for every process."""
    # Metrics listeners on ports of their own: products side by side (and other people's) never collide.
    extra = {"WORKER_METRICS_PORT": str(free_port()), "TSERVER_METRICS_PORT": str(free_port()), **(env or {})}
    stack = Stack(root=root, broker_url=broker_url, state_backend=backend, extra_env=extra)
    stack.redis_url = os.environ.get("REDIS_URL", stack.redis_url)
    return stack


@contextmanager
def running_stack(
    broker_url: str,
    label: str,
    seed: Callable[[Stack], object] | None = None,
    backend: str = "files",
    env: dict[str, str] | None = None,
) -> Iterator[Stack]:
    """A started product; `seed(stack)` runs before anything starts. Its folder (and Redis keys) are
    removed after, unless starting it failed (its logs are then kept and named)."""
    root = Path(tempfile.mkdtemp(prefix=f"bench-{label.replace(' ', '-')}-"))
    stack = make_stack(broker_url, root, backend, env)
    failed = False
    try:
        stack.state_dir.mkdir(parents=True)
        if seed is not None:
            seed(stack)
        started = time.monotonic()
        try:
            _start(stack)
        except StackTimeout as exc:
            raise StackError(str(exc)) from None
        log.info(
            "%s: product started in %.1f s (%s backend, gateway %s, logs in %s)",
            label,
            time.monotonic() - started,
            backend,
            stack.api,
            root,
        )
        yield stack
    except BaseException as exc:
        failed = True
        if isinstance(exc, Exception):
            log.error("%s: failed (%s); the last lines of its logs:\n%s", label, exc, stack.log_tails())
        raise
    finally:
        stack.stop()
        try:
            delete_chunk_queue(stack)
        except Exception as exc:  # noqa: BLE001 - a leftover empty queue is not worth failing a run for
            log.warning("%s: could not delete its chunk queue: %s", label, exc)
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


def _worker_role(cmdline: str) -> str | None:
    """ "worker" or "chunks" for a Celery worker's command line, None for anything else."""
    if "celery" not in cmdline or " worker" not in cmdline:
        return None
    return "chunks" if ".chunks" in cmdline.split("--queues=", 1)[-1].split(" ", 1)[0] else "worker"


def processes(stack: Stack) -> dict[str, psutil.Process]:
    """The product's processes by role: gateway, tserver, worker and chunks (Celery's main processes)
    and their pool processes, "worker child N" and "chunks child N"."""
    found: dict[str, psutil.Process] = {}
    gateway = stack.procs.get("gateway")
    supervisord = stack.procs.get("supervisord")
    try:
        if gateway is not None:
            found["gateway"] = psutil.Process(gateway.pid)
        if supervisord is not None:
            for child in psutil.Process(supervisord.pid).children():
                cmdline = " ".join(child.cmdline())
                role = _worker_role(cmdline)
                if "-m tserver" in cmdline:
                    found["tserver"] = child
                elif role is not None:
                    found[role] = child
                    # The prefork pool: one process per WORKER_CONCURRENCY, numbered by pid.
                    for i, pool in enumerate(sorted(child.children(), key=lambda p: p.pid), start=1):
                        found[f"{role} child {i}"] = pool
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


def _queue(stack: Stack, name: str | None) -> tuple[Any, Any]:
    from kombu import Connection, Queue

    conn = Connection(stack.broker_url, connect_timeout=5)
    return conn, Queue(name or stack.queue, channel=conn.channel())


def queue_depth(stack: Stack, name: str | None = None) -> int:
    """Messages ready in the stack's queue (or `name`); a passive declare: it never creates the queue."""
    conn, queue = _queue(stack, name)
    with conn:
        return int(queue.queue_declare(passive=True).message_count)


def purge_queue(stack: Stack, name: str | None = None) -> int:
    """Drop every ready message of the stack's queue (or `name`); how many there were."""
    conn, queue = _queue(stack, name)
    with conn:
        return int(queue.purge() or 0)


def stop_worker(stack: Stack, program: str = "worker") -> None:
    """Stop a Celery worker program through supervisord (a warm shutdown), as an operator would."""
    out = stack.supervisorctl("stop", program)
    if "stopped" not in out.stdout and "not running" not in out.stdout.lower():
        raise StackError(f"supervisorctl stop {program}: {out.stdout.strip()} {out.stderr.strip()}")


def start_worker(stack: Stack, program: str = "worker") -> None:
    """Start a Celery worker program again and wait until its pool is there."""
    out = stack.supervisorctl("start", program)
    if "started" not in out.stdout and "already started" not in out.stdout:
        raise StackError(f"supervisorctl start {program}: {out.stdout.strip()} {out.stderr.strip()}")
    deadline = time.monotonic() + 30
    while not any(role.startswith(f"{program} child") for role in processes(stack)):
        if time.monotonic() > deadline:
            raise StackError(f"the {program} program's pool did not come up within 30 s")
        time.sleep(0.1)


def delete_chunk_queue(stack: Stack) -> None:
    """Remove the stack's chunk queue (Stack.stop removes only its main queue)."""
    from kombu import Connection, Queue

    with Connection(stack.broker_url, connect_timeout=3) as conn:
        Queue(f"{stack.queue}.chunks", channel=conn.channel()).delete()
