"""Every compose stack, checked through its published ports and the engine: the routes, supervisord's
web UI, what is published and what is not, the volumes, who the processes run as, the broker's
health check and the logs."""

from __future__ import annotations

import httpx

from tests.containers.engine import podman, until
from tests.containers.stack import PI_8, SUPERVISORD_WORKERS, Stack


def test_root_describes_the_compute_container(stack: Stack) -> None:
    """GET / is answered by a Thrift server's container (either replica, where there are two) and
    reports the disk of the state folder (of / when the state is in Redis)."""
    thrift = [name for service in stack.spec.thrift_services for name in stack.compose.containers_of(service)]
    thrift_hosts = {stack.compose.hostname(name) for name in thrift}
    for _ in range(2 * len(thrift_hosts)):
        body = stack.get("/").json()
        assert body["hostname"] in thrift_hosts, (body["hostname"], thrift_hosts)
        assert body["disk"]["path"] == stack.spec.disk_path
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
    """Every container of the stack is looked at: RabbitMQ, Redis, the Thrift ports (9000) of both
    replicas and the worker containers stay inside the compose network."""
    allowed = {
        "tserver": {"9001/tcp": [f"127.0.0.1:{stack.supervisor_port}"]},
        "app": {"8000/tcp": [f"0.0.0.0:{stack.api_port}"]},
    }
    names = stack.compose.containers()
    assert len(names) == stack.spec.container_count, names
    seen = {name: stack.compose.published(name) for name in names}
    expected = {name: allowed.get(stack.compose.service_of(name), {}) for name in names}
    assert seen == expected, "only the gateway and supervisord's UI (on loopback) may be published"


def test_every_volume_is_a_named_volume_of_the_project(stack: Stack) -> None:
    """An anonymous volume (from a VOLUME line in an image) would be left behind at every `down`; the
    named volumes are where the stack's files say (a worker container or a Thrift replica has none)."""
    project = stack.compose.project
    mounts = {name: stack.compose.volumes(name) for name in stack.compose.containers()}
    anonymous = {
        name: [m["Destination"] for m in ms if not m["Name"].startswith(f"{project}_")] for name, ms in mounts.items()
    }
    assert not any(anonymous.values()), f"anonymous volumes: {anonymous}"
    seen = {name: sorted((m["Name"], m["Destination"]) for m in ms) for name, ms in mounts.items()}
    expected = {
        name: sorted((f"{project}_{volume}", where) for volume, where in stack.spec.volumes.get(service, ()))
        for name in mounts
        for service in [stack.compose.service_of(name)]
    }
    assert seen == expected


def test_every_process_runs_as_a_non_root_user(stack: Stack) -> None:
    """Sampled a few times: a health check that the engine execs as root is gone a moment later,
    a process that stays root is seen in every sample."""
    containers = stack.compose.containers()
    assert len(containers) == stack.spec.container_count, containers

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


def test_the_compute_container_logs_show_the_thrift_server_and_the_workers(stack: Stack) -> None:
    """`logs tserver` shows the lines of the programs supervisord runs there (the Thrift server, the
    workers of whole calculations and of chunks); the worker that ran a task (in that container or,
    scaled, in a worker container: the task's `hosts` say which) shows the task in its `logs`."""
    task_id = stack.start(3)
    stack.wait_status(task_id, {"SUCCESS"})
    compute = stack.compose.container("tserver")
    ran_on = stack.ran_on(task_id)
    assert len(ran_on) == 1, f"a task of 3 places runs in one piece, on one host: {ran_on}"

    def files(name: str) -> list[str]:
        text = podman("exec", compute, "cat", f"/var/log/pi/{name}.log").stdout
        return [line for line in text.splitlines() if line.strip()]

    def shown() -> bool:
        logs = stack.compose.run("logs", "tserver", timeout=60).stdout
        for program in ("tserver", *SUPERVISORD_WORKERS):
            assert any(line in logs for line in files(program)), f"no line of {program}.log in `logs tserver`"
        assert f"calc_pi[{task_id}]" in stack.compose.logs(ran_on[0]), f"the task is not in {ran_on[0]}'s logs"
        return True

    until(shown, 30, "the programs' lines in `logs tserver`, the task in its worker's logs", interval=1)
