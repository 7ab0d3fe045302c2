"""What the worker counts: tasks by outcome and runtime (named as celery-exporter names them), series
terms computed and their rate, and the chunks of split calculations by outcome.

Counting is done by Celery's signals, in whichever process runs the task (a pool process) or discards
it (the main process, for a revoked message); the task bodies only report what signals cannot see: the
terms they computed (`terms_computed`) and an end they recorded themselves (`note_outcome`, called by
recording.finish). Every series carries `hostname`, the Celery node name of the program that counted
it: each series then has one writer program, so a program's restart is a clean counter reset for its own
series instead of a drop in a sum shared with a sibling (worker/metrics_files.py serves them all).

Labels are bounded: a task name, a node name, an outcome from a fixed list. Never a task id.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from celery import signals
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from state.records import FAILURE, REVOKED
from worker.app import settings

#: This process's own view of the metrics (tests, and a worker run without the multiprocess folder).
REGISTRY = CollectorRegistry(auto_describe=True)
_TASK = ("name", "hostname")

STARTED = Counter("celery_task_started", "Task runs started.", _TASK, registry=REGISTRY)
SUCCEEDED = Counter("celery_task_succeeded", "Task runs that ended well.", _TASK, registry=REGISTRY)
FAILED = Counter(
    "celery_task_failed", "Task runs that raised, or ended their calculation as FAILURE.", _TASK, registry=REGISTRY
)
REVOKED_RUNS = Counter(
    "celery_task_revoked",
    "Task messages discarded as revoked, and runs that ended their "
    "calculation as REVOKED (cancelled before or while running).",
    _TASK,
    registry=REGISTRY,
)
RETRIED = Counter("celery_task_retried", "Task runs that asked to be run again later.", _TASK, registry=REGISTRY)
RUNTIME = Histogram(
    "celery_task_runtime_seconds",
    "Seconds from a task run's start to its end.",
    _TASK,
    registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 1800),
)
# Pool processes running a task now. livesum: a process that dies mid-task must stop counting, so its
# file is removed when it is gone (worker/metrics_files.py); each process sets 0 or 1, never adds, so
# a new process that happens to get a dead one's pid starts from a true value.
ACTIVE = Gauge(
    "celery_worker_tasks_active", "Tasks running now.", ("hostname",), registry=REGISTRY, multiprocess_mode="livesum"
)
TERMS = Counter(
    "leibniz_terms",
    "Series terms computed (a cancelled run counts those it recorded).",
    ("hostname",),
    registry=REGISTRY,
)
# A histogram, not a gauge of the last rate: it sums over pool processes and hosts like every other
# series here (a gauge would need one value chosen among processes), and it shows a slow run among
# fast ones. Observed per whole calculation or chunk of at least _RATE_MIN_TERMS terms.
RATE = Histogram(
    "leibniz_terms_per_second",
    "Series terms per second of computing, one observation per calculation or chunk.",
    ("hostname",),
    registry=REGISTRY,
    buckets=(1e6, 1e7, 1e8, 3e8, 1e9, 2e9, 3e9, 4e9, 5e9, 6e9, 7e9, 8e9, 1e10, 1.5e10, 2e10),
)
CHUNKS = Counter(
    "split_chunks",
    "Chunks of split calculations by outcome: done, skipped (ran and found "
    "its task cancelled, ended or gone), failed, revoked (discarded before running).",
    ("outcome", "hostname"),
    registry=REGISTRY,
)

# Below this many terms a run's rate measures Python and the store, not the kernel (d=1 is 2 terms).
_RATE_MIN_TERMS = 10**6
_CHUNK_TASK = "worker.calc_chunk"


@dataclass
class _Run:
    started: float
    outcome: str | None = None  # FAILURE or REVOKED when the run recorded (or found) its calculation so


_run: ContextVar[_Run | None] = ContextVar("pi_metrics_run", default=None)
_node = [socket.gethostname()]


def set_node(name: str) -> None:
    """The Celery node name of this program (the `hostname` label)."""
    _node[0] = name


def note_outcome(status: str) -> None:
    """The running task recorded (or found) its calculation ended as `status`: a REVOKED or FAILURE end is
    counted as such even though Celery sees the task return normally."""
    run = _run.get()
    if run is not None and status in (FAILURE, REVOKED):
        run.outcome = status


def terms_computed(terms: int, seconds: float) -> None:
    """A calculation or chunk computed `terms` series terms in `seconds` of computing."""
    if not settings.METRICS_ENABLED or terms <= 0:
        return
    TERMS.labels(_node[0]).inc(terms)
    if terms >= _RATE_MIN_TERMS and seconds > 0 and not settings.DEMO_MIN_SECONDS:  # the demo pace sleeps
        RATE.labels(_node[0]).observe(terms / seconds)


def _labels(task: Any) -> tuple[str, str]:
    return str(getattr(task, "name", None) or "unknown"), _node[0]


def _prerun(task: Any, **_: Any) -> None:
    _run.set(_Run(time.monotonic()))
    STARTED.labels(*_labels(task)).inc()
    ACTIVE.labels(_node[0]).set(1)


def _success(sender: Any, result: Any = None, **_: Any) -> None:
    run = _run.get()
    outcome = run.outcome if run is not None else None
    {FAILURE: FAILED, REVOKED: REVOKED_RUNS}.get(outcome or "", SUCCEEDED).labels(*_labels(sender)).inc()
    if getattr(sender, "name", None) == _CHUNK_TASK:
        CHUNKS.labels(_chunk_outcome(result, outcome), _node[0]).inc()


def _chunk_outcome(result: Any, outcome: str | None) -> str:
    if outcome == FAILURE or (isinstance(result, dict) and result.get("skipped") == FAILURE):
        return "failed"
    return "done" if isinstance(result, dict) and "total" in result else "skipped"


def _failure(sender: Any, **_: Any) -> None:
    FAILED.labels(*_labels(sender)).inc()
    if getattr(sender, "name", None) == _CHUNK_TASK:
        CHUNKS.labels("failed", _node[0]).inc()


def _retry(sender: Any, **_: Any) -> None:
    RETRIED.labels(*_labels(sender)).inc()


def _revoked(sender: Any, **_: Any) -> None:
    # In the main process: a message discarded because its id was revoked (a cancelled task's chunks).
    REVOKED_RUNS.labels(*_labels(sender)).inc()
    if getattr(sender, "name", None) == _CHUNK_TASK:
        CHUNKS.labels("revoked", _node[0]).inc()


def _postrun(task: Any, **_: Any) -> None:
    run = _run.get()
    if run is not None:
        RUNTIME.labels(*_labels(task)).observe(time.monotonic() - run.started)
    ACTIVE.labels(_node[0]).set(0)
    _run.set(None)


def _named(sender: Any, **_: Any) -> None:
    # worker_process_init names the node (the main process learnt it at celeryd_init, the child inherits it).
    if isinstance(sender, str) and sender:
        set_node(sender)


_HANDLERS: Sequence[tuple[Any, Any]] = (
    (signals.task_prerun, _prerun),
    (signals.task_success, _success),
    (signals.task_failure, _failure),
    (signals.task_retry, _retry),
    (signals.task_revoked, _revoked),
    (signals.task_postrun, _postrun),
    (signals.celeryd_init, _named),
    (signals.worker_process_init, _named),
)

if settings.METRICS_ENABLED:
    for signal, handler in _HANDLERS:
        signal.connect(handler, weak=False)
