"""Which task the code running now is about: its id names every log line (tserver/logs.py) and the
call's span.

The handler's methods that know a task's id bind it. Each call runs in an asyncio task of its own
(tserver/runtime/server.py), whose context ends with it: nothing needs resetting, and concurrent calls
never see each other's id.
"""

from __future__ import annotations

from contextvars import ContextVar

from opentelemetry import trace

from state.records import TASK_ID as _CANONICAL

#: Our task id (the state record's, the one the gateway returned) for the current call, if known.
TASK_ID: ContextVar[str | None] = ContextVar("tserver_task_id", default=None)


def bind_task(task_id: object) -> None:
    """Name `task_id` in the current call's log lines and span; anything but a canonical task id (a
    client's garbage, None for an argument left out) is left out, so logs and span attributes hold ids only."""
    if not isinstance(task_id, str) or len(task_id) != 36 or not _CANONICAL.fullmatch(task_id):
        return
    TASK_ID.set(task_id)
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attribute("pi.task_id", task_id)  # the attribute the worker's spans carry
