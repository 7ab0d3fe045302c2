"""The gateway's log lines: text, or one JSON object a line (LOG_FORMAT=json), each naming the task and
the trace it is about (docs/observability.md: ts, level, logger, process, msg, task_id, trace_id, span_id, exc).

The task comes from a context variable the task routes set (`bind_task`): every line logged while
serving that request, or by a task it started (single-flight reads, an event stream's poll loop),
names it. The trace comes from OpenTelemetry's current span, when tracing is on. A filter on the one
handler adds both to every record, uvicorn's included, so the formatters only lay them out.

A formatter of our own rather than python-json-logger: twenty lines give exactly the contract's keys,
and nothing to configure.
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Literal, TextIO

from opentelemetry import trace

PROCESS = "gateway"
#: The id of the task the current request or background job is about.
TASK_ID: ContextVar[str | None] = ContextVar("task_id", default=None)
_CONTEXT_KEYS = ("task_id", "trace_id", "span_id")


def bind_task(task_id: str) -> None:
    """Name `task_id` on every log line of the current request.

    Not reset afterwards: uvicorn serves each request in an asyncio task of its own, whose context
    (and so this value) ends with it.
    """
    TASK_ID.set(task_id)


class ContextFilter(logging.Filter):
    """Adds task_id, trace_id and span_id (None where unknown) to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:  # `extra={"task_id": ...}` wins
            record.task_id = TASK_ID.get()
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        record.span_id = format(span.span_id, "016x") if span.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the contract's keys; the context keys only when known."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": PROCESS,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["exc"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The gateway's text lines as before, followed by `task_id=... trace_id=...` when known."""

    def __init__(self) -> None:
        super().__init__(f"%(asctime)s {PROCESS} %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        known = [f"{key}={value}" for key in _CONTEXT_KEYS if (value := getattr(record, key, None)) is not None]
        if not known:
            return line
        first, newline, rest = line.partition("\n")  # after the message, before a traceback
        return f"{first} {' '.join(known)}{newline}{rest}"


def configure(
    log_format: Literal["text", "json"], *, level: int | str = logging.INFO, stream: TextIO | None = None
) -> logging.Handler:
    """Send every logger's records (uvicorn's too) to one handler on `stream` (stderr) in `log_format`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's loggers keep no handlers of their own (uvicorn.run is given log_config=None): they
    # propagate to the root's, in the same format.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    return handler
