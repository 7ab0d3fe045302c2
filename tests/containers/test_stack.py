"""The compose stack, checked through its published ports: the routes, supervisord's web UI, what is
published and what is not, who the processes run as, the broker's health check and the logs."""

from __future__ import annotations

import httpx

from tests.containers.engine import podman, until
from tests.containers.stack import PI_8, Stack


def test_root_describes_the_compute_container(stack: Stack) -> None:
    body = stack.get("/").json()
    compute = stack.compose.container("tserver")
    assert body["hostname"] == podman("inspect", "--format", "{{.Config.Hostname}}", compute).stdout.strip()
    assert body["disk"]["path"] == "/data/results"
    assert body["cpu"]["count"] >= 1 and body["memory"]["total"] > 0


def test_a_calculation_gives_the_digits_and_is_listed(stack: Stack) -> None:
    task_id = stack.start(8)
    done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"})
    assert (done["status"], done["digits"]) == ("SUCCESS", PI_8), done
    assert done["result"] == float(PI_8) and done["progress"] == 100.0
    listing = stack.get("/alltasks", params={"limit": 1000})
    assert listing.status_code == 200 and int(listing.headers["X-Total-Count"]) >= 1
    assert task_id in {task["id"] for task in listing.json()}
    assert stack.get("/task/00000000-0000-4000-8000-000000000000").status_code == 404


def test_the_pages_are_served(stack: Stack) -> None:
    docs = stack.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    ui = stack.get("/ui", follow_redirects=True)
    assert ui.status_code == 200 and "text/html" in ui.headers["content-type"]
    idl = stack.get("/idl", follow_redirects=True)
    assert idl.status_code == 200 and "RPCcelery" in idl.text
    assert stack.get("/openapi.json").json()["paths"]


def test_supervisord_ui_needs_the_credentials(stack: Stack) -> None:
    assert httpx.get(stack.supervisor, timeout=10).status_code == 401
    assert httpx.get(stack.supervisor, auth=(stack.supervisor_user, "wrong"), timeout=10).status_code == 401
    ok = httpx.get(stack.supervisor, auth=(stack.supervisor_user, stack.supervisor_password), timeout=10)
    assert ok.status_code == 200 and "tserver" in ok.text and "worker" in ok.text


def test_only_the_gateway_and_the_loopback_ui_are_published(stack: Stack) -> None:
    published = {stack.compose.container(s): s for s in ("rabbitmq", "tserver", "app")}
    seen = {service: stack.compose.published(name) for name, service in published.items()}
    assert seen == {
        "rabbitmq": {},
        "tserver": {"9001/tcp": [f"127.0.0.1:{stack.supervisor_port}"]},
        "app": {"8000/tcp": [f"0.0.0.0:{stack.api_port}"]},
    }, "RabbitMQ (5672) and the Thrift port (9000) must stay inside the compose network"


def test_every_volume_is_a_named_volume_of_the_project(stack: Stack) -> None:
    """An anonymous volume (from a VOLUME line in an image) would be left behind at every `down`."""
    mounts = {name: stack.compose.volumes(name) for name in stack.compose.containers()}
    anonymous = {
        name: [m["Destination"] for m in ms if not m["Name"].startswith(f"{stack.compose.project}_")]
        for name, ms in mounts.items()
    }
    assert not any(anonymous.values()), f"anonymous volumes: {anonymous}"
    compute = mounts[stack.compose.container("tserver")]
    assert [(m["Name"], m["Destination"]) for m in compute] == [(f"{stack.compose.project}_results", "/data/results")]


def test_every_process_runs_as_a_non_root_user(stack: Stack) -> None:
    """Sampled a few times: a health check that the engine execs as root is gone a moment later,
    a process that stays root is seen in every sample."""
    containers = stack.compose.containers()
    assert len(containers) >= 3

    def all_non_root() -> bool:
        rows = []
        for name in containers:
            top = podman("top", name, "user", "pid", "args").stdout.splitlines()[1:]
            rows += [f"{name}: {row}" for row in top if row.split()[0] in ("root", "0")]
        assert not rows, rows
        return True

    until(all_non_root, 10, "no process running as root", interval=1)


def test_the_broker_health_check_passes(stack: Stack) -> None:
    rabbitmq = stack.compose.container("rabbitmq")
    until(
        lambda: podman("healthcheck", "run", rabbitmq, check=False, timeout=60).returncode == 0,
        120,
        "the rabbitmq service's health check (rabbitmq-diagnostics ping) to pass",
        interval=2,
    )


def test_the_compute_container_logs_show_the_thrift_server_and_the_worker(stack: Stack) -> None:
    task_id = stack.start(3)
    stack.wait_status(task_id, {"SUCCESS"})
    compute = stack.compose.container("tserver")

    def files(name: str) -> list[str]:
        text = podman("exec", compute, "cat", f"/var/log/pi/{name}.log").stdout
        return [line for line in text.splitlines() if line.strip()]

    def shown() -> bool:
        logs = stack.compose.run("logs", "tserver", timeout=60).stdout
        tserver_lines = [line for line in files("tserver") if line in logs]
        assert tserver_lines, "no line of the Thrift server's log in the container's output"
        assert task_id in logs, "the worker's lines about the task are not in the container's output"
        return True

    until(shown, 30, "the Thrift server's and the worker's lines in `logs tserver`", interval=1)
