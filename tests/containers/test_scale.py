"""What docker-compose.scale.yml adds, checked through the published ports and engine commands: Redis
(not published, refusing a client without the password, append-only on its named volume), two
worker containers that run tasks (and chunks of split ones) outside the supervisord container and
finish a task when the other dies, and two Thrift servers, either of which can go away while reads
keep answering.

Why through the engine: nothing inside the compose network is reachable from the host, which is
the point of not publishing it; `podman exec` is what an operator has.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import httpx
import pytest

from tests.containers.engine import podman, until
from tests.containers.stack import PI_8, PI_10, Stack

pytestmark = pytest.mark.stacks("scale")

#: A client of Redis on the compose network without the password, run in a worker container (it has
#: redis-py): what it gets back.
_NO_PASSWORD_CLIENT = """
import redis
try:
    redis.Redis(host="redis", socket_timeout=5).ping()
    print("ANSWERED")
except redis.AuthenticationError as exc:
    print("REFUSED", exc)
"""


def _redis_cli(stack: Stack, *args: str, password: bool = True) -> str:
    """redis-cli inside the redis container, with the password from its environment or without."""
    auth = '--no-auth-warning -a "$REDIS_PASSWORD" ' if password else ""
    script = f"redis-cli {auth}" + " ".join(args)
    done = podman("exec", stack.compose.container("redis"), "sh", "-c", script, timeout=30)
    return (done.stdout + done.stderr).strip()


def test_redis_is_not_published_and_refuses_a_client_without_the_password(stack: Stack) -> None:
    redis = stack.compose.container("redis")
    assert stack.compose.published(redis) == {}, "Redis must stay inside the compose network"
    assert "NOAUTH" in _redis_cli(stack, "ping", password=False)
    assert "WRONGPASS" in _redis_cli(stack, "-a", "not-the-password", "--no-auth-warning", "ping", password=False)
    over_the_network = podman("exec", stack.compose.container("worker"), "python", "-c", _NO_PASSWORD_CLIENT).stdout
    assert over_the_network.startswith("REFUSED"), over_the_network
    assert _redis_cli(stack, "ping") == "PONG"
    until(
        lambda: podman("healthcheck", "run", redis, check=False, timeout=60).returncode == 0,
        60,
        "the redis service's health check (redis-cli ping with the password) to pass",
        interval=1,
    )


def test_redis_keeps_the_state_append_only_on_its_named_volume(stack: Stack) -> None:
    """As the scale file asks: append-only, fsync every second, files in /data (the volume
    `redis-data`, checked by test_every_volume_is_a_named_volume_of_the_project), owned by Redis's
    non-root user."""
    assert _redis_cli(stack, "config", "get", "appendonly").split() == ["appendonly", "yes"]
    assert _redis_cli(stack, "config", "get", "appendfsync").split() == ["appendfsync", "everysec"]
    assert _redis_cli(stack, "config", "get", "dir").split() == ["dir", "/data"]
    owner = podman("exec", stack.compose.container("redis"), "stat", "-c", "%U", "/data/appendonlydir").stdout.strip()
    assert owner not in ("", "root"), owner


def test_two_worker_containers_run(stack: Stack) -> None:
    workers = stack.compose.containers_of("worker")
    assert len(workers) == 2, workers
    for name in workers:
        assert podman("inspect", "--format", "{{.State.Running}}", name).stdout.strip() == "true", name
        top = podman("top", name, "user", "args").stdout
        assert "python -m worker" in top, top
    assert len({stack.compose.hostname(name) for name in workers}) == 2
    stack.wait_consumers()  # on both queues: the supervisord container and both worker containers


def _reads_while(stack: Stack, action: Callable[[], object], readers: int = 4) -> tuple[Counter[int], list[str]]:
    """Status codes of GET / and GET /alltasks from `readers` threads, during and 2 s after `action`;
    anything but a response is an error string (never raised in the thread)."""
    codes: Counter[int] = Counter()
    errors: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def read() -> None:
        with httpx.Client(base_url=stack.api, timeout=10) as client:
            while not stop.is_set():
                for path in ("/", "/alltasks?limit=10"):
                    try:
                        response = client.get(path)
                    except httpx.HTTPError as exc:
                        with lock:
                            errors.append(f"{path}: {exc!r}")
                        continue
                    with lock:
                        codes[response.status_code] += 1
                        if response.status_code != 200:
                            errors.append(f"{path}: {response.status_code} {response.text[:200]}")

    threads = [threading.Thread(target=read, daemon=True) for _ in range(readers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        action()
        time.sleep(2)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
    return codes, errors


def _answering_hosts(stack: Stack, calls: int = 12) -> set[str]:
    return {stack.get("/").json()["hostname"] for _ in range(calls)}


def test_both_thrift_servers_answer_and_either_may_go(stack: Stack) -> None:
    """GET / names the container that answered: both replicas take calls. The engine stops one, then
    supervisorctl stops the other one's Thrift server: reads keep answering 200 throughout, and a
    replica back up is taken back into rotation."""
    first = stack.compose.container("tserver")
    second = stack.compose.container("tserver-2")
    hosts = {name: stack.compose.hostname(name) for name in (first, second)}
    until(lambda: _answering_hosts(stack) == set(hosts.values()), 30, "both Thrift servers to answer GET /")

    codes, errors = _reads_while(stack, lambda: podman("stop", second, timeout=60))
    try:
        assert not errors and codes[200] > 0, (codes, errors[:5])
        assert _answering_hosts(stack) == {hosts[first]}
    finally:
        podman("start", second, timeout=60)
    until(lambda: hosts[second] in _answering_hosts(stack), 30, "the restarted replica back in rotation")

    codes, errors = _reads_while(stack, lambda: stack.supervisorctl("stop", "tserver"))
    try:
        assert not errors and codes[200] > 0, (codes, errors[:5])
        assert _answering_hosts(stack) == {hosts[second]}
    finally:
        stack.supervisorctl("start", "tserver")
    until(lambda: _answering_hosts(stack) == set(hosts.values()), 30, "both Thrift servers to answer again")


@pytest.fixture(scope="module")
def worker_containers_only(stack: Stack) -> Iterator[None]:
    """The supervisord container's Celery workers stopped, so that tasks run only in the worker
    containers; started again after the module's last test: once for both checks that need it."""
    with stack.without_the_supervisord_workers():
        yield


@pytest.mark.usefixtures("worker_containers_only")
def test_tasks_run_in_the_worker_containers(stack: Stack) -> None:
    """With the supervisord container's workers stopped, tasks still end with the digits: computed in
    the worker containers (the `hosts` the gateway reports are theirs). A task of 8 places runs in
    one piece on one of them (its log shows it); one of 10 places is split into 7 chunks, and as
    each worker holds at most two messages at a time (prefetch 1 x concurrency 2), both take some."""
    workers = stack.compose.containers_of("worker")
    whole, split = stack.start(8), stack.start(10)
    for task_id, digits in ((whole, PI_8), (split, PI_10)):
        done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=120)
        assert (done["status"], done["digits"]) == ("SUCCESS", digits), done
    ran_whole = stack.ran_on(whole)
    assert len(ran_whole) == 1 and ran_whole[0] in workers, ran_whole
    assert f"calc_pi[{whole}] received" in stack.compose.logs(ran_whole[0])
    assert sorted(stack.ran_on(split)) == sorted(workers), "the chunks did not run in both worker containers"


@pytest.mark.usefixtures("worker_containers_only")
def test_a_worker_container_killed_mid_task_leaves_it_to_the_other(stack: Stack) -> None:
    """A worker host lost (the engine's kill -9 of its container) in the middle of a split task (10
    places: 7 chunks, killed as soon as it has taken one): the chunks it was running go back to the
    queue (late acknowledgement), and the other worker container finishes the task with the digits."""
    workers = stack.compose.containers_of("worker")
    task_id = stack.start(10)
    victim = until(lambda: stack.ran_on(task_id), 30, f"a worker container to take chunks of {task_id}", 0.02)[0]
    try:
        podman("kill", "--signal", "KILL", victim)
        before = stack.task(task_id)
        assert before["status"] == "PROGRESS", f"the task ended before the kill: {before}"
        done = stack.wait_status(task_id, {"SUCCESS", "FAILURE", "REVOKED"}, timeout=180)
        assert (done["status"], done["digits"]) == ("SUCCESS", PI_10), done
        assert done["attempts"] >= 2, "no chunk was delivered again after the kill"
        assert sorted(stack.ran_on(task_id)) == sorted(workers), "the other worker did not take over"
    finally:
        # `podman kill` counts as a stop by the user: restart: unless-stopped does not apply.
        podman("start", victim, timeout=120)
