"""Unusable settings stop each program at start with a one-line message (real processes)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import GatewaySettings
from state.config import StateSettings
from tserver.config import ServerSettings
from worker.config import WorkerSettings

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def start(cmd: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if k
        not in GatewaySettings.model_fields
        | WorkerSettings.model_fields
        | ServerSettings.model_fields
        | StateSettings.model_fields
    }
    base.update(PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}", STATE_DIR=str(tmp_path / "results"))
    base.update(env)
    return subprocess.run(cmd, cwd=REPO, env=base, capture_output=True, text=True, timeout=60)


@pytest.fixture
def not_a_folder(tmp_path: Path) -> str:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return str(blocker / "results")


@pytest.mark.parametrize(
    ("cmd", "env", "name"),
    [
        ([sys.executable, "-m", "tserver"], {"TSERVER_PORT": "ninety"}, "TSERVER_PORT"),
        ([sys.executable, "-m", "tserver"], {"TSERVER_PORT": "70000"}, "TSERVER_PORT"),
        ([sys.executable, "-m", "tserver"], {"MAX_DECIMAL": "13"}, "MAX_DECIMAL"),
        ([sys.executable, "-m", "tserver"], {"BROKER_URL": "redis://localhost"}, "BROKER_URL"),
        ([sys.executable, "-m", "tserver"], {"CELERY_QUEUE": "bad queue/name"}, "CELERY_QUEUE"),
        ([sys.executable, "-m", "tserver"], {"LOG_LEVEL": "verbose"}, "LOG_LEVEL"),
        ([sys.executable, "-m", "app"], {"API_PORT": "eighty"}, "API_PORT"),
        ([sys.executable, "-m", "app"], {"LOG_LEVEL": "info "}, "LOG_LEVEL"),
        ([sys.executable, "-m", "app"], {"THRIFT_TIMEOUT": "-1"}, "THRIFT_TIMEOUT"),
        ([sys.executable, "-m", "app"], {"TSERVER_ADDRESSES": "a:1,b"}, "TSERVER_ADDRESSES"),
        ([sys.executable, "-m", "app"], {"TSERVER_ADDRESSES": "[::1:9000"}, "TSERVER_ADDRESSES"),
        ([sys.executable, "-m", "app"], {"TSERVER_ADDRESSES": "h:99999"}, "TSERVER_ADDRESSES"),
        ([sys.executable, "-m", "tserver"], {"STATE_BACKEND": "redis", "REDIS_URL": "http://x"}, "REDIS_URL"),
        ([sys.executable, "-m", "tserver"], {"STATE_BACKEND": "redis", "REDIS_URL": "redis://h:port"}, "REDIS_URL"),
        ([sys.executable, "-m", "tserver"], {"STATE_BACKEND": "sqlite"}, "STATE_BACKEND"),
        ([sys.executable, "-m", "tserver"], {"REDIS_KEY_PREFIX": "a b"}, "REDIS_KEY_PREFIX"),
        ([sys.executable, "-m", "worker"], {"STATE_BACKEND": "redis", "REDIS_URL": "redis://:secret@h:x"}, "REDIS_URL"),
        (
            [sys.executable, "-m", "worker"],
            {"CELERY_QUEUE_TYPE": "quorum", "TASK_MAX_ATTEMPTS": "25"},
            "TASK_MAX_ATTEMPTS",
        ),
        ([str(BIN / "celery"), "-A", "worker.app", "worker"], {"MAX_DECIMAL": "0"}, "MAX_DECIMAL"),
    ],
)
def test_bad_setting_stops_with_one_line(tmp_path: Path, cmd: list[str], env: dict, name: str) -> None:
    run = start(cmd, tmp_path, **env)
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("invalid configuration:") and name in lines[0]


@pytest.mark.parametrize(
    "cmd", [[sys.executable, "-m", "tserver"], [str(BIN / "celery"), "-A", "worker.app", "worker"]]
)
def test_unwritable_state_folder_stops_with_one_line(tmp_path: Path, not_a_folder: str, cmd: list[str]) -> None:
    run = start(cmd, tmp_path, STATE_DIR=not_a_folder)
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1, run.stderr
    assert "STATE_DIR" in lines[0] and "not a writable folder" in lines[0]


def test_defaults_are_the_documented_ones(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in (
        GatewaySettings.model_fields
        | WorkerSettings.model_fields
        | ServerSettings.model_fields
        | StateSettings.model_fields
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    worker, server, gateway, state = WorkerSettings(), ServerSettings(), GatewaySettings(), StateSettings()
    assert worker.BROKER_URL == "amqp://guest:guest@localhost:5672//"
    assert (tmp_path / "results").resolve() == state.STATE_DIR and worker.MAX_DECIMAL == 10
    assert server.TSERVER_PORT == 9000 and gateway.TSERVER_PORT == 9000 and gateway.API_PORT == 8000
    readme = (REPO / "README.md").read_text()
    for key in (
        "BROKER_URL",
        "CELERY_QUEUE",
        "STATE_DIR",
        "TSERVER_HOST",
        "TSERVER_PORT",
        "API_PORT",
        "SUPERVISOR_PORT",
        "SUPERVISOR_USER",
        "SUPERVISOR_PASSWORD",
        "MAX_DECIMAL",
    ):
        assert f"`{key}`" in readme, f"{key} is not documented in README.md"


def test_a_bad_redis_url_never_shows_its_password(tmp_path: Path) -> None:
    run = start([sys.executable, "-m", "tserver"], tmp_path, STATE_BACKEND="redis", REDIS_URL="redis://:hunter2@h:x")
    assert run.returncode != 0 and "REDIS_URL" in run.stderr and "hunter2" not in run.stderr
