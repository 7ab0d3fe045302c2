"""The real `python -m tserver` (files backend, the machine's RabbitMQ, a queue of its own and no worker): its
metrics scraped over HTTP after a known set of calls, METRICS_ENABLED=false, a metrics port already taken,
and LOG_FORMAT=json lines naming their task and trace (tracing on, exported to the console)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from RPC.ttypes import BadTask
from testing.waiting import free_port
from tests.tserver.runtime_harness import (
    ROOT,
    connect,
    encode_call,
    frame,
    stock_client,
    wait_closed_by_server,
    wait_for,
)
from tests.tserver.test_publishing import _delete_queue, _depth
from tests.tserver.test_tracing import PARENT, TRACE, TRACEPARENT, _Empty
from tests.tserver.theader_wire import header_client

pytestmark = pytest.mark.timeout(120)

# Our settings are the test's to give: none comes from the environment the tests run in.
_OURS = ("TSERVER_", "METRICS_", "LOG_FORMAT", "OTEL_", "STATE_", "REDIS_", "BROKER_URL", "CELERY_")


@dataclass
class Running:
    proc: subprocess.Popen[str]
    port: int
    metrics_port: int
    queue: str
    stderr: str = ""
    stdout: str = ""

    def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }


def environment(tmp_path: Path, broker_url: str, **settings: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env.update(
        PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "gen-py")]),
        PYTHONUNBUFFERED="1",
        STATE_DIR=str(tmp_path / "results"),
        BROKER_URL=broker_url,
        TSERVER_HOST="127.0.0.1",
        TSERVER_PORT="0",
        CELERY_QUEUE=f"test-tserver-{uuid.uuid4().hex[:12]}",
        TSERVER_METRICS_PORT=str(free_port()),
    )
    env.update(settings)
    return env


@contextmanager
def tserver(tmp_path: Path, broker_url: str, **settings: str) -> Iterator[Running]:
    """`python -m tserver` serving until the block ends (then SIGTERM; its output kept on the Running)."""
    env = environment(tmp_path, broker_url, **settings)
    port_file = tmp_path / f"port-{uuid.uuid4().hex[:6]}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tserver", "--port-file", str(port_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    running = Running(proc, 0, int(env["TSERVER_METRICS_PORT"]), env["CELERY_QUEUE"])
    try:
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 30, "the Thrift server to listen")
        assert proc.poll() is None, proc.communicate()
        running.port = int(port_file.read_text())
        yield running
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            running.stdout, running.stderr = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            running.stdout, running.stderr = proc.communicate()
        _delete_queue(broker_url, running.queue)


def calls(found: dict, method: str, outcome: str) -> float:
    return found["thrift_server_calls_total", (("method", method), ("outcome", outcome))]


def tasks(found: dict) -> dict[str, float]:
    return {dict(labels)["status"]: v for (name, labels), v in found.items() if name == "tasks"}


def test_metrics_count_exactly_what_was_done(tmp_path: Path, broker_url: str) -> None:
    with tserver(tmp_path, broker_url) as srv:
        with stock_client(srv.port, framed=True) as client:
            started = [client.queueCalcPi(2).id for _ in range(3)]
            for _ in range(2):
                with pytest.raises(BadTask):
                    client.getTaskStatus(str(uuid.uuid4()))
            assert client.getTaskStatus(started[0]).status == "WAITING"
            assert client.cancelTask(started[0]).status == "REVOKED"
        with header_client(srv.port) as client:
            assert client.getTaskStatus(started[1]).id == started[1]
        with connect(srv.port) as sock:
            sock.sendall(frame(encode_call("dropTables", _Empty())))
            assert sock.recv(65536)
            sock.sendall(b"\x00\x00\x00\x00")  # a frame of no bytes: no request
            wait_closed_by_server(sock, 2.0)
        found = srv.scrape()
        assert _depth(broker_url, srv.queue) == 3

    assert calls(found, "queueCalcPi", "ok") == 3
    assert calls(found, "getTaskStatus", "idl_error") == 2
    assert calls(found, "getTaskStatus", "ok") == 2
    assert calls(found, "cancelTask", "ok") == 1
    assert calls(found, "unknown", "decode_error") == 2  # a method the IDL lacks, and bytes that are no request
    assert sum(v for (name, _), v in found.items() if name == "thrift_server_calls_total") == 10
    assert found["thrift_server_call_duration_seconds_count", (("method", "queueCalcPi"),)] == 3
    assert {dict(labels)["outcome"]: v for (name, labels), v in found.items() if name == "publishes_total"} == {
        "confirmed": 3,
        "nack": 0,
        "returned": 0,
        "timeout": 0,
        "not_sent": 0,
    }
    assert tasks(found) == {"WAITING": 2, "PROGRESS": 0, "SUCCESS": 0, "FAILURE": 0, "REVOKED": 1}
    assert not any("dropTables" in str(labels) for _, labels in found)
    assert found["process_resident_memory_bytes", ()] > 0


def test_metrics_enabled_false_opens_no_listener(tmp_path: Path, broker_url: str) -> None:
    with tserver(tmp_path, broker_url, METRICS_ENABLED="false") as srv:
        with stock_client(srv.port, framed=True) as client:
            client.queueCalcPi(1)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", srv.metrics_port), timeout=2).close()
    assert "metrics off" in srv.stderr


def test_a_metrics_port_already_taken_is_a_one_line_error(tmp_path: Path, broker_url: str) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:  # listening: the port is taken
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "tserver"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=environment(tmp_path, broker_url, TSERVER_METRICS_PORT=str(port)),
        )
    assert run.returncode != 0
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"tserver: cannot serve metrics on 127.0.0.1:{port}: ") and "in use" in line, line


def test_json_logs_name_the_task_and_the_trace(tmp_path: Path, broker_url: str) -> None:
    with (
        tserver(tmp_path, broker_url, LOG_FORMAT="json", OTEL_TRACES_EXPORTER="console") as srv,
        header_client(srv.port) as client,
    ):
        client._iprot.trans.set_header(b"traceparent", TRACEPARENT)
        task_id = client.queueCalcPi(3).id
        client._iprot.trans.set_header(b"traceparent", TRACEPARENT)
        assert client.cancelTask(task_id).status == "REVOKED"

    lines = [json.loads(line) for line in srv.stderr.splitlines()]  # every line is one JSON object
    assert lines and all(entry["process"] == "tserver" for entry in lines)
    assert all({"ts", "level", "logger", "msg"} <= set(entry) for entry in lines)
    assert all(entry["ts"].endswith("Z") for entry in lines)
    (cancelled,) = [entry for entry in lines if "cancelled" in entry["msg"]]
    assert cancelled["task_id"] == task_id and cancelled["level"] == "INFO"
    assert cancelled["trace_id"] == TRACE and len(cancelled["span_id"]) == 16 and cancelled["span_id"] != PARENT
    assert not any("task_id" in entry for entry in lines if "serving RPCcelery" in entry["msg"])
    # The console exporter wrote the spans (on stdout) when the process stopped.
    assert '"name": "queueCalcPi"' in srv.stdout and '"name": "apply_async/worker.calc_pi"' in srv.stdout
    assert '"name": "cancelTask"' in srv.stdout
