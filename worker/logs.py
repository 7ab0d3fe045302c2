"""The worker's log lines: Celery's own and ours, as text (Celery's format) or one JSON object per line.

Celery keeps hijacking the root logger (worker_hijack_root_logger): it removes what was there, adds its
handlers (stderr or --logfile, colours on a terminal), and then sends after_setup_logger and
after_setup_task_logger, where we give those handlers our formatter and our context filter. So every
line, Celery's included, goes through them, and Celery's choices of where and at which level stay.
(A setup_logging receiver would have replaced Celery's setup wholesale, --logfile and all.)

Each line about a task names our task id (`task_id`, worker/context.py): inside a task run from the
run's arguments; outside one (the main process: "received", "Discarding revoked task") from the task
named in the line's text (the Celery ids of chunks and chord steps begin with our id) or from its
arguments. With tracing on, a line inside a run carries its span's `trace_id` and `span_id`. JSON keys
(docs/observability.md): ts, level, logger, process, msg, task_id, trace_id, span_id, exc.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
from datetime import UTC, datetime
from typing import Any

from celery import signals
from celery.utils.log import get_multiprocessing_logger
from opentelemetry import trace

from worker import context
from worker.app import settings

PROCESS = "worker"
_CONTEXT_KEYS = ("task_id", "trace_id", "span_id")


class TaskContext(logging.Filter):
    """Adds task_id, trace_id and span_id to a record (None where not known); lets every record through."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "task_id", None) is None:
            task_id = context.current()
            if task_id is None and record.name.startswith("celery"):
                task_id = context.named_in_text(record.getMessage(), getattr(record, "data", None))
            record.task_id = task_id
        span = trace.get_current_span().get_span_context()
        record.trace_id = format(span.trace_id, "032x") if span.is_valid else None
        record.span_id = format(span.span_id, "016x") if span.is_valid else None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the keys of docs/observability.md."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "process": PROCESS,
            "msg": record.getMessage(),
        }
        for key in _CONTEXT_KEYS:
            value = getattr(record, key, None)
            if value:
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            line["exc"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """Celery's own formatter, with the task id (when the text lacks it) and the trace ids appended."""

    def __init__(self, celery_formatter: logging.Formatter | None) -> None:
        super().__init__()
        self.inner = celery_formatter or logging.Formatter(logging.BASIC_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record)
        task_id = getattr(record, "task_id", None)
        extra = [f"task_id={task_id}"] if task_id and task_id not in text else []
        extra += [f"{key}={getattr(record, key)}" for key in ("trace_id", "span_id") if getattr(record, key, None)]
        if not extra:
            return text
        first, newline, rest = text.partition("\n")  # after the message, before a traceback
        return f"{first} [{' '.join(extra)}]{newline}{rest}"


def configure(logger: logging.Logger) -> None:
    """Give `logger`'s handlers our formatter and the context filter (idempotent)."""
    for handler in logger.handlers:
        if not any(isinstance(f, TaskContext) for f in handler.filters):
            handler.addFilter(TaskContext())
        if isinstance(handler.formatter, JsonFormatter | TextFormatter):
            continue
        handler.setFormatter(JsonFormatter() if settings.LOG_FORMAT == "json" else TextFormatter(handler.formatter))


def _after_setup(logger: logging.Logger, **_: Any) -> None:
    configure(logger)
    if logger is logging.getLogger():
        mp_logger = get_multiprocessing_logger()
        if mp_logger is not None:
            configure(mp_logger)


def _json_from_the_start(instance: Any = None, **_: Any) -> None:
    """JSON before Celery sets up logging, and for what Celery writes around logging (LOG_FORMAT=json)."""
    if settings.LOG_FORMAT != "json":
        return
    # Its start-up banner goes to stdout by print(): not a line of ours to shape, so it is left out.
    if instance is not None:
        instance.quiet = True
    # Warnings raised before Celery's logging exists (the one about running as root) become log lines
    # of a handler that Celery's hijack of the root logger then replaces.
    early = logging.StreamHandler()
    early.setFormatter(JsonFormatter())
    logging.getLogger().addHandler(early)
    logging.captureWarnings(True)
    # Its notices from signal handlers ("worker: Warm shutdown") bypass logging on purpose (no locks in
    # a signal handler): written the same way, one write, but as a JSON line.
    import celery.apps.worker as celery_worker

    celery_worker.safe_say = _say_json


def _say_json(msg: str, f: Any = None) -> None:
    record = logging.LogRecord("celery.apps.worker", logging.WARNING, __file__, 0, msg, None, None)
    line = JsonFormatter().format(record) + "\n"
    stream: Any = f or sys.__stderr__
    with contextlib.suppress(OSError, AttributeError, ValueError):  # as Celery's safe_say: nowhere to say it
        os.write(stream.fileno(), line.encode())


signals.after_setup_logger.connect(_after_setup, weak=False)
signals.after_setup_task_logger.connect(_after_setup, weak=False)
signals.celeryd_init.connect(_json_from_the_start, weak=False)
