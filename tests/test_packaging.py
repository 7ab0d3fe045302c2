"""The container path, checked statically (no Docker engine here), and the generated code."""

from __future__ import annotations

import configparser
import filecmp
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_names_the_three_services(compose: dict) -> None:
    assert set(compose["services"]) == {"rabbitmq", "tserver", "app"}
    assert "healthcheck" in compose["services"]["rabbitmq"]
    assert compose["services"]["tserver"]["depends_on"]["rabbitmq"]["condition"] == "service_healthy"
    assert compose["services"]["tserver"]["command"][0] == "supervisord"
    assert compose["services"]["app"]["command"] == ["python", "-m", "app"]


def test_only_8000_and_9001_on_loopback_are_published(compose: dict) -> None:
    # The host's side can be moved (API_PUBLISH_PORT, SUPERVISOR_PUBLISH_PORT); 8000 and 9001 by default.
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    assert published == {
        "rabbitmq": [],
        "tserver": ["127.0.0.1:${SUPERVISOR_PUBLISH_PORT:-9001}:9001"],
        "app": ["${API_PUBLISH_PORT:-8000}:8000"],
    }


def test_compose_shares_the_compute_environment(compose: dict) -> None:
    tserver = compose["services"]["tserver"]["environment"]
    app = compose["services"]["app"]["environment"]
    for key in ("BROKER_URL", "CELERY_QUEUE", "STATE_DIR", "MAX_DECIMAL", "TSERVER_PORT", "SUPERVISOR_PASSWORD"):
        assert key in tserver, key
    assert app["TSERVER_HOST"] == "tserver" and app["TSERVER_PORT"] == tserver["TSERVER_PORT"]
    assert app["MAX_DECIMAL"] == tserver["MAX_DECIMAL"]
    # Secrets come from the environment, never from the file.
    assert tserver["SUPERVISOR_PASSWORD"].startswith("${SUPERVISOR_PASSWORD:?")
    assert "results:/data/results" in compose["services"]["tserver"]["volumes"]
    assert "results" in compose["volumes"]


def test_dockerfile_is_slim_and_non_root() -> None:
    text = (REPO / "Dockerfile").read_text()
    assert text.count("FROM python:3.11-slim") == 2
    assert "USER pi" in text and "useradd" in text
    assert "PASSWORD" not in text.replace("SUPERVISOR_PASSWORD and", "")
    for path in ("supervisord.conf", "docker/entrypoint.sh"):
        assert path in text and (REPO / path).exists()


def test_entrypoint_refuses_default_or_empty_passwords(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "LOG_DIR": str(tmp_path), "RUN_DIR": str(tmp_path), "STATE_DIR": str(tmp_path)}
    for password in ("", "admin", "changeme"):
        run = subprocess.run(
            ["sh", str(REPO / "docker/entrypoint.sh"), "supervisord", "-v"],
            env={**env, "SUPERVISOR_PASSWORD": password},
            capture_output=True,
            text=True,
        )
        assert run.returncode == 64 and "refusing to start" in run.stderr
    ok = subprocess.run(
        ["sh", str(REPO / "docker/entrypoint.sh"), "true"],
        env={**env, "SUPERVISOR_PASSWORD": ""},
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0


def test_supervisord_conf_requires_auth_and_caps_logs() -> None:
    conf = configparser.RawConfigParser()
    conf.read(REPO / "supervisord.conf")
    http = conf["inet_http_server"]
    assert http["username"] == "%(ENV_SUPERVISOR_USER)s" and http["password"] == "%(ENV_SUPERVISOR_PASSWORD)s"
    assert conf["supervisorctl"]["password"] == "%(ENV_SUPERVISOR_PASSWORD)s"
    for program in ("tserver", "worker"):
        section = conf[f"program:{program}"]
        assert section["stdout_logfile"].endswith(f"{program}.log")
        assert section["stdout_logfile_maxbytes"] == "5MB"
    assert conf["program:worker"]["command"].startswith("celery -A worker.app worker")
    assert conf["program:worker"]["killasgroup"] == "true"
    assert conf["program:logs"]["stdout_logfile"] == "/dev/stdout"


@pytest.mark.skipif(
    shutil.which("thrift") is None, reason="needs Debian's thrift-compiler (apt-get install thrift-compiler)"
)
def test_gen_py_matches_the_idl(tmp_path: Path) -> None:
    subprocess.run(
        ["thrift", "--gen", "py", "-out", str(tmp_path), str(REPO / "rpcinterface.thrift")], check=True, timeout=60
    )
    (tmp_path / "RPC" / "RPCcelery-remote").unlink()
    diff = filecmp.dircmp(tmp_path / "RPC", REPO / "gen-py" / "RPC", ignore=["__pycache__"])
    assert not (diff.diff_files or diff.left_only or diff.right_only), "gen-py/ is stale: run `make gen`"


def test_the_dashboard_and_idl_pages_ship_in_the_package() -> None:
    import glob
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["app"]
    shipped = {
        Path(p).relative_to(REPO / "app").as_posix()
        for pattern in patterns
        for p in glob.glob(str(REPO / "app" / pattern))
    }
    for needed in ("static/index.html", "static/app.js", "static/app.css", "static/idl/rpcinterface.html"):
        assert needed in shipped, f"{needed} would be missing from the wheel (and the image)"


def test_metrics_stay_inside_the_compose_network_and_flower_gets_events(compose: dict) -> None:
    compute = compose["services"]["tserver"]["environment"]
    assert compute["WORKER_METRICS_HOST"] == "0.0.0.0" and compute["CELERY_EVENTS"] == "true"
    published = " ".join(p for svc in compose["services"].values() for p in svc.get("ports", []))
    assert "9100" not in published and "9101" not in published
