"""The gateway's log lines (app/logs.py): LOG_FORMAT=json gives one JSON object a line with the contract's
keys, every line about a task names it, and the trace when tracing is on; uvicorn's loggers follow."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from app import logs
from app.config import GatewaySettings
from app.main import create_app
from tests.app.theader_server import RUNNING, THeaderServer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def server() -> Iterator[THeaderServer]:
    srv = THeaderServer().start()
    yield srv
    srv.close()


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root logger's output in JSON, restored afterwards (pytest's own handlers included)."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    stream = io.StringIO()
    logs.configure("json", stream=stream)
    yield stream
    root.handlers[:], root.level = saved


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def run_requests(port: int, provider: TracerProvider | None = None) -> tuple[str, str]:
    """A start and a cancellation through the real app: the started task's id, and the cancelled one's."""

    async def scenario() -> tuple[str, str]:
        app = create_app(GatewaySettings(TSERVER_PORT=port), tracer_provider=provider)
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            started = await c.post("/calcpi/4")
            cancelled = await c.delete(f"/task/{RUNNING}")
            assert (started.status_code, cancelled.status_code) == (202, 200)
            return started.json()["id"], cancelled.json()["id"]

    return asyncio.run(scenario())


def test_json_lines_parse_and_name_their_task(server: THeaderServer, captured: io.StringIO) -> None:
    started, cancelled = run_requests(server.port)
    entries = lines(captured)
    for entry in entries:
        assert {"ts", "level", "logger", "process", "msg"} <= entry.keys() and entry["process"] == "gateway"
        assert str(entry["ts"]).endswith("Z") and "trace_id" not in entry  # tracing is off
    about = {entry["msg"]: entry for entry in entries if entry["logger"] == "app.routes.tasks"}
    assert about["task queued: decimal 4"]["task_id"] == started
    assert about["task cancelled: REVOKED"]["task_id"] == cancelled == RUNNING
    assert about["task queued: decimal 4"]["level"] == "INFO"


def test_json_lines_name_the_trace_when_tracing_is_on(server: THeaderServer, captured: io.StringIO) -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    started, _ = run_requests(server.port, provider)
    queued = next(e for e in lines(captured) if e["msg"] == "task queued: decimal 4")
    http = next(s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER and s.name.startswith("POST"))
    assert queued["task_id"] == started
    assert queued["trace_id"] == format(http.context.trace_id, "032x")
    assert queued["span_id"] == format(http.context.span_id, "016x")


def test_uvicorn_and_tracebacks_in_the_same_format(captured: io.StringIO) -> None:
    logging.getLogger("uvicorn.error").info("Started server process [%d]", 42)
    token = logs.TASK_ID.set("5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c")
    try:
        raise ValueError("bad")
    except ValueError:
        logging.getLogger("app.feeds").exception("polling failed")
    finally:
        logs.TASK_ID.reset(token)
    first, second = lines(captured)
    assert first["logger"] == "uvicorn.error" and first["msg"] == "Started server process [42]"
    assert second["level"] == "ERROR" and second["task_id"] == "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"
    assert "ValueError: bad" in str(second["exc"]) and "\n" not in captured.getvalue().splitlines()[1]


def test_text_lines_name_the_task_too() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("text", stream=stream)
        logging.getLogger("app.x").warning("about a task", extra={"task_id": "abc"})
        logging.getLogger("app.x").warning("about nothing")
    finally:
        root.handlers[:], root.level = saved
    about, nothing = stream.getvalue().splitlines()
    assert about.endswith("gateway WARNING app.x: about a task task_id=abc")
    assert nothing.endswith("gateway WARNING app.x: about nothing")


def test_log_format_setting() -> None:
    assert GatewaySettings().LOG_FORMAT == "text"
    assert GatewaySettings(LOG_FORMAT="json").LOG_FORMAT == "json"
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        GatewaySettings(LOG_FORMAT="xml")  # type: ignore[arg-type]  # the point: a refused value


def test_log_level_setting() -> None:
    assert GatewaySettings().LOG_LEVEL == "INFO"
    assert GatewaySettings(LOG_LEVEL="WARNING").LOG_LEVEL == "WARNING"
    for refused in ("verbose", "", "10"):
        with pytest.raises(ValueError, match="LOG_LEVEL"):
            GatewaySettings(LOG_LEVEL=refused)  # type: ignore[arg-type]  # the point: a refused value


def test_warning_level_drops_info_lines_and_keeps_the_rest() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        logs.configure("text", level="WARNING", stream=stream)
        logging.getLogger("app.x").info("task queued: decimal 6")
        logging.getLogger("app.x").warning("slow")
    finally:
        root.handlers[:], root.level = saved
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("gateway WARNING app.x: slow")
