"""The compose file sets the container stage runs, and what each of them is expected to look like.

Why a table with expectations in it: the checks are written once (tests/containers/test_*.py) and
run against every set. What legitimately differs between the sets (which services answer Thrift
calls, where task state lives, which containers run a Celery worker, the command lines a scaled
service needs) is stated here, next to the files, so that a check never asks "which stack is this?".
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The passwords every set needs, made fresh and random for each stack brought up.
BASE_PASSWORDS = ("SUPERVISOR_PASSWORD", "RABBITMQ_PASSWORD")
#: The volumes docker-compose.yml mounts: service -> [(volume, where it is mounted)].
BASE_VOLUMES = {
    "tserver": (("results", "/data/results"),),
    "rabbitmq": (("rabbitmq-data", "/var/lib/rabbitmq"),),
}


@dataclass(frozen=True)
class StackSpec:
    """A set of compose files run together, the settings it takes, and what it should look like."""

    files: tuple[str, ...]
    #: Settings of its own, given to every compose call (beside the passwords and published ports).
    env: dict[str, str] = field(default_factory=dict)
    #: Environment variables that hold a password: each gets a fresh random value per stack.
    passwords: tuple[str, ...] = BASE_PASSWORDS
    #: Extra arguments of `up` (e.g. `--scale worker=2`).
    up_args: tuple[str, ...] = ()
    #: Extra arguments of `down`: podman-compose's `down` knows only the containers its own arguments
    #: describe, so the replicas `up --scale` added need `--remove-orphans` (Docker Compose's `down`
    #: removes every container of the project by itself).
    down_args: tuple[str, ...] = ()
    #: How many containers run once the stack is up.
    container_count: int = 3
    #: The services whose containers run a Thrift server the gateway calls.
    thrift_services: tuple[str, ...] = ("tserver",)
    #: The services whose containers run a Celery worker (the supervisord container's `tserver` runs one).
    worker_services: tuple[str, ...] = ("tserver",)
    #: The folder whose disk GET / reports: the state folder, or / when state is in Redis.
    disk_path: str = "/data/results"
    #: The named volumes each service mounts; every other service mounts none.
    volumes: dict[str, tuple[tuple[str, str], ...]] = field(default_factory=lambda: dict(BASE_VOLUMES))
    #: The service and named volume that hold the task state (what `down` and `up` must keep).
    state_volume: tuple[str, str] = ("tserver", "results")


STACKS: dict[str, StackSpec] = {
    # docker-compose.yml: RabbitMQ, the supervisord container (Thrift server + worker, state in files on
    # the named volume `results`) and the gateway.
    "compose": StackSpec(files=("docker-compose.yml",)),
    # docker-compose.scale.yml on top: Redis (state, append-only on the named volume `redis-data`),
    # a second Thrift server, two worker-only containers. The supervisord container keeps its Thrift
    # server and worker (on Redis too), so tasks run in three containers.
    "scale": StackSpec(
        files=("docker-compose.yml", "docker-compose.scale.yml"),
        passwords=(*BASE_PASSWORDS, "REDIS_PASSWORD"),
        up_args=("--scale", "worker=2"),
        down_args=("--remove-orphans",),
        container_count=7,  # rabbitmq, redis, tserver, tserver-2, worker x 2, app
        thrift_services=("tserver", "tserver-2"),
        worker_services=("tserver", "worker"),
        disk_path="/",
        volumes={**BASE_VOLUMES, "redis": (("redis-data", "/data"),)},
        state_volume=("redis", "redis-data"),
    ),
}
