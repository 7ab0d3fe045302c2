"""The Thrift server's log lines: one JSON object per line with the contract's keys, every line of a call about a
task naming it (the handler binds it; calls running at once never see each other's), the trace when a
span is current."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider

from RPC.ttypes import BadTask
from state.files import FileStore
from state.files_catalog import FileCatalog
from tserver import logs
from tserver.context import TASK_ID, bind_task
from tserver.errors import QueueUnavailable
from tserver.handler import RPCceleryHandler

ID = "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"
log = logging.getLogger("tserver.test")


@pytest.mark.parametrize("value", [ID, ID.upper(), "garbage", "", None, 5, ID + "0", "../" + ID[3:]])
def test_only_a_canonical_task_id_is_bound(value: object) -> None:
    async def call() -> str | None:  # each call runs in an asyncio task of its own, as in the server
        bind_task(value)
        return TASK_ID.get()

    assert asyncio.run(call()) == (ID if value == ID else None)


def test_json_lines_carry_the_contracts_keys(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logs.configure("json", stream=stream)
    try:

        async def call() -> None:
            bind_task(ID)
            log.warning("task %s not queued: %s", ID, "broker down")
            try:
                raise ValueError("boom")
            except ValueError:
                log.exception("it failed")

        asyncio.run(call())
        log.info("no task here")
        provider = TracerProvider()
        with provider.get_tracer("t").start_as_current_span("getTaskStatus") as span:
            log.info("traced")
        provider.shutdown()
    finally:
        logging.getLogger().removeHandler(handler)
    first, failed, plain, traced = (json.loads(line) for line in stream.getvalue().splitlines())
    assert first["msg"] == f"task {ID} not queued: broker down"
    assert (first["level"], first["logger"], first["process"], first["task_id"]) == (
        "WARNING",
        "tserver.test",
        "tserver",
        ID,
    )
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert "boom" in failed["exc"] and failed["task_id"] == ID
    assert set(plain) == {"ts", "level", "logger", "process", "msg"}  # context keys only when known
    assert traced["trace_id"] == format(span.get_span_context().trace_id, "032x")
    assert traced["span_id"] == format(span.get_span_context().span_id, "016x")


def test_concurrent_calls_each_name_their_own_task(tmp_path: Path) -> None:
    stream = io.StringIO()
    handler = logs.configure("json", stream=stream)
    ids = [f"5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b{i:02x}" for i in range(10)]

    async def call(task_id: str) -> None:
        bind_task(task_id)
        await asyncio.sleep(0.01)  # the others run meanwhile
        log.info("about %s", task_id)

    async def all_at_once() -> None:
        await asyncio.gather(*(call(t) for t in ids))

    try:
        asyncio.run(all_at_once())
    finally:
        logging.getLogger().removeHandler(handler)
    for line in map(json.loads, stream.getvalue().splitlines()):
        assert line["msg"] == f"about {line['task_id']}"


def test_the_handler_names_the_task_of_its_calls(tmp_path: Path) -> None:
    class Down:
        async def __call__(self, task_id: str, decimal: int) -> None:
            raise QueueUnavailable("broker down")

    stream = io.StringIO()
    handler = logs.configure("json", stream=stream)
    (tmp_path / "results").mkdir()
    rpc = RPCceleryHandler(FileCatalog(FileStore(tmp_path / "results")), Down(), 10, disk_path=str(tmp_path))

    async def calls() -> str | None:
        with pytest.raises(Exception, match="unavailable"):
            await rpc.queueCalcPi(3)
        with pytest.raises(BadTask):
            await rpc.getTaskStatus(ID)
        return TASK_ID.get()

    try:
        assert asyncio.run(calls()) == ID  # the last call's
    finally:
        logging.getLogger().removeHandler(handler)
        asyncio.run(rpc.catalog.close())
    (line,) = (json.loads(raw) for raw in stream.getvalue().splitlines())
    assert line["msg"].startswith(f"task {line['task_id']} not queued") and line["level"] == "WARNING"
