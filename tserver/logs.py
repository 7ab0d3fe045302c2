"""The Thrift server's log lines: text, or one JSON object a line (LOG_FORMAT=json), each naming the task
and the trace it is about (docs/observability.md: ts, level, logger, process, msg, task_id, trace_id,
span_id, exc).

The task comes from tserver/context.py (the handler binds it); the trace from OpenTelemetry's current
span, when tracing is on (the call's server span, or the publish span within it). A filter on the one
handler adds them to every record, so the formatters only lay them out. A formatter of our own, as the
gateway's and the worker's: a few lines give exactly the contract's keys.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from opentelemetry import trace

from tserver.context import TASK_ID

PROCESS = "tserver"
_CONTEXT_KEYS = ("task_id", "trace_id", "span_id")


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
    """The server's text lines as before, followed by `task_id=... trace_id=... span_id=...` when known."""

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
    """Send every logger's records to one handler on `stream` (stderr) in `log_format`."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler
