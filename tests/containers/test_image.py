"""The image itself, run by the engine: no compiler at run time, a non-root user, and supervisord
refused an empty or well-known password (by the container, and by every compose file set: the scale
set needs REDIS_PASSWORD too)."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.containers.engine import Compose, podman
from tests.containers.stacks import STACKS

COMPILERS = ("gcc", "cc", "c++", "g++", "clang", "tcc", "cpp", "as", "ld")
#: The passwords docker/entrypoint.sh refuses, beside the empty one.
WELL_KNOWN = ("admin", "password", "changeme", "secret", "supervisor")


def test_the_runtime_image_holds_no_compiler(image: str) -> None:
    script = (
        "for c in " + " ".join(COMPILERS) + '; do command -v "$c"; done; '
        'find / -xdev \\( -name "cc1*" -o -name "*-linux-gnu-gcc*" \\) -print 2>/dev/null; true'
    )
    found = podman("run", "--rm", "--entrypoint", "sh", image, "-c", script, timeout=120).stdout.split()
    assert found == [], f"the runtime image holds a compiler or its parts: {found}"


def test_the_image_runs_as_a_non_root_user(image: str) -> None:
    assert podman("image", "inspect", "--format", "{{.Config.User}}", image).stdout.strip() == "pi"
    uid = podman("run", "--rm", "--entrypoint", "id", image, "-u", timeout=60).stdout.strip()
    assert uid not in ("", "0"), uid


@pytest.mark.parametrize("password", ["", *WELL_KNOWN], ids=["empty", *WELL_KNOWN])
def test_the_container_refuses_an_empty_or_well_known_password(image: str, password: str) -> None:
    name = f"{os.environ.get('PI_CONTAINERS_PROJECT_PREFIX', f'pitest{os.getpid()}')}-refuse"
    try:
        run = podman(
            "run",
            "--rm",
            "--name",
            name,
            "-e",
            f"SUPERVISOR_PASSWORD={password}",
            image,
            "supervisord",
            "-c",
            "/app/supervisord.conf",
            check=False,
            timeout=60,
        )
    finally:
        podman("rm", "-f", name, check=False)
    assert run.returncode == 64, (run.returncode, run.stdout, run.stderr)
    why = "is empty" if password == "" else "is a well-known password"
    assert f"refusing to start: SUPERVISOR_PASSWORD {why}" in run.stderr, run.stderr


@pytest.mark.parametrize("name", sorted(STACKS))
def test_the_compose_files_refuse_a_missing_password(engine: None, name: str) -> None:
    spec = STACKS[name]
    for missing in spec.passwords:
        env = {**{password: secrets.token_hex(12) for password in spec.passwords}, missing: ""}
        run = Compose("pitest-config", spec.files, env).run("config", check=False, timeout=60)
        assert run.returncode != 0, f"compose accepted an empty {missing}"
        assert f"set {missing}" in run.stderr, run.stderr[-500:]
