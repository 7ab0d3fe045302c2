"""`python -m app` as a process on a real uvicorn: LOG_FORMAT=json for every line (uvicorn's own included),
GET /metrics over HTTP, and a task read through a THeader Thrift server with tracing on (console exporter)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from testing.waiting import free_port, wait_for
from tests.app.theader_server import ENDED, THeaderServer

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server() -> Iterator[THeaderServer]:
    srv = THeaderServer().start()
    yield srv
    srv.close()


def start(tserver_port: int, **env: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    environ = {
        **os.environ,
        "API_PORT": str(port),
        "TSERVER_PORT": str(tserver_port),
        **env,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "gen-py")]),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "app"], cwd=REPO, env=environ, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    api = f"http://127.0.0.1:{port}"

    def up() -> bool | None:
        assert proc.poll() is None, proc.communicate()
        try:
            return httpx.get(f"{api}/livez", timeout=1).status_code == 200 or None
        except httpx.HTTPError:
            return None

    wait_for(up, 15, "the gateway to answer")
    return proc, api


def stop(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=15)
    assert proc.returncode in (0, -signal.SIGTERM), err  # uvicorn re-raises the signal once it has stopped
    return out, err


def test_json_logs_metrics_and_traces_of_the_real_process(server: THeaderServer) -> None:
    proc, api = start(
        server.port,
        LOG_FORMAT="json",
        METRICS_ENABLED="true",
        OTEL_TRACES_EXPORTER="console",
        OTEL_BSP_SCHEDULE_DELAY="50",
        OTEL_SERVICE_NAME="gateway-under-test",
    )
    try:
        assert httpx.get(f"{api}/task/{ENDED}").status_code == 200
        page = httpx.get(f"{api}/metrics").text
    finally:
        out, err = stop(proc)
    assert 'http_requests_total{handler="/task/{id}",method="GET",status="200"} 1.0' in page
    assert 'thrift_client_calls_total{method="getTaskStatus",outcome="ok"} 1.0' in page
    entries = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert all(e["process"] == "gateway" for e in entries)
    assert any(e["logger"] == "uvicorn.error" and "Uvicorn running on" in e["msg"] for e in entries)
    # The console exporter wrote both spans (batched) before the process ended.
    assert '"name": "GET /task/{id}"' in out and '"name": "getTaskStatus"' in out
    assert '"service.name": "gateway-under-test"' in out
    assert server.headers[0][b"traceparent"].startswith(b"00-")


def test_metrics_disabled_in_the_real_process(server: THeaderServer) -> None:
    proc, api = start(server.port, METRICS_ENABLED="false")
    try:
        assert httpx.get(f"{api}/metrics").status_code == 404
        assert httpx.get(f"{api}/task/{ENDED}").status_code == 200
    finally:
        _, err = stop(proc)
    assert server.client_types == [0x01]  # THeaderClientType.FRAMED_BINARY: tracing is off
    assert " gateway INFO uvicorn.error: " in err  # the text format


def test_log_level_warning_drops_the_info_lines_of_the_real_process(server: THeaderServer) -> None:
    proc, api = start(server.port, LOG_LEVEL="WARNING")
    try:
        assert httpx.get(f"{api}/task/{ENDED}").status_code == 200
    finally:
        _, err = stop(proc)
    assert " INFO " not in err, err  # uvicorn's "Started server process" and "Uvicorn running on" are INFO
