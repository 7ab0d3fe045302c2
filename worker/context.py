"""Which calculation the code running now works for: our task id, for log lines and spans.

Our task id is the id the gateway returned (the state record's). It is the first argument of calc_pi,
calc_chunk and split_failed, the second of combine_chunks (a chord puts the chunks' results first),
and for anything else Celery runs on a calculation's behalf (celery.chord_unlock) the Celery root id,
which is calc_pi's own id, the same one. Celery task ids of chunks and of the combining step begin with
it too (worker/chunks.py), so that Celery's own lines outside a task can be attributed by their text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from contextvars import ContextVar
from typing import Any

from celery import signals

_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
_CANONICAL = re.compile(rf"{_UUID}\Z")
# Celery names a task in its lines as name[id]: ours are worker.*, and their ids begin with our id.
_NAMED_IN_TEXT = re.compile(rf"\bworker\.[a-z_]+\[({_UUID})")
# The ids worker/chunks.py derives (<our id>.<generation>.<chunk or step>), e.g. the combining step's in
# the arguments of celery.chord_unlock (its body).
_DERIVED_ID = re.compile(rf"({_UUID})\.\d+\.")
# The argument that holds our task id, by task name (worker/tasks.py, worker/chunks.py).
_ARGUMENT = {"worker.calc_pi": 0, "worker.calc_chunk": 0, "worker.split_failed": 0, "worker.combine_chunks": 1}

_current: ContextVar[str | None] = ContextVar("pi_task_id", default=None)


def current() -> str | None:
    """Our task id while a task runs in this thread (None between tasks)."""
    return _current.get()


def our_task_id(name: str, args: Sequence[Any] | None, root_id: object = None) -> str | None:
    """Our task id for a run of task `name` with `args` (None if it has none, or a malformed one)."""
    position = _ARGUMENT.get(name)
    if position is not None:
        candidate = args[position] if args is not None and len(args) > position else None
    else:
        candidate = root_id
    return candidate if isinstance(candidate, str) and _CANONICAL.match(candidate) else None


def named_in_text(text: str, data: object = None) -> str | None:
    """Our task id from a line of Celery's outside a task: one of our tasks named as name[id] in its
    text, or an id of ours in the task arguments it carries (`data`: Celery's "received" lines)."""
    match = _NAMED_IN_TEXT.search(text)
    if match is None and isinstance(data, dict):
        match = _DERIVED_ID.search(str(data.get("args", "")))
    return match.group(1) if match else None


def _enter(task: Any, args: Sequence[Any] | None = None, **_: Any) -> None:
    _current.set(our_task_id(task.name, args, getattr(task.request, "root_id", None)))


def _leave(**_: Any) -> None:
    _current.set(None)


# Connected at import, before the handlers of worker/metrics.py and worker/tracing.py that read it.
signals.task_prerun.connect(_enter, weak=False)
signals.task_postrun.connect(_leave, weak=False)
