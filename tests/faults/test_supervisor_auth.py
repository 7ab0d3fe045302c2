"""supervisord's web UI, its XML-RPC interface and supervisorctl refuse anyone without the credentials:
a stranger can neither read the processes' state nor stop one."""

from __future__ import annotations

import subprocess
import xmlrpc.client
from collections.abc import Iterator

import httpx
import pytest

from testing.stack import BIN
from tests.faults.conftest import FaultStack, program_pid, running_stack

pytestmark = pytest.mark.timeout(120)

GET_STATE = xmlrpc.client.dumps((), "supervisor.getState").encode()
STOP_TSERVER = xmlrpc.client.dumps(("tserver",), "supervisor.stopProcess").encode()


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(tmp_path_factory.mktemp("auth"), broker_url) as s:
        yield s


@pytest.mark.parametrize(
    "auth",
    [None, ("tester", "wrong"), ("admin", "admin"), ("", ""), ("tester", "")],
    ids=["none", "wrong-password", "default-guess", "empty", "empty-password"],
)
def test_xmlrpc_and_web_ui_refuse_bad_credentials(stack: FaultStack, auth: tuple[str, str] | None) -> None:
    tserver = program_pid(stack, "tserver")
    with httpx.Client(base_url=stack.supervisor_url, auth=auth, timeout=5) as client:
        for body in (GET_STATE, STOP_TSERVER):
            r = client.post("/RPC2", content=body, headers={"Content-Type": "text/xml"})
            assert r.status_code == 401, r.text
            assert "RUNNING" not in r.text
        for path in (
            "/",
            "/index.html?processname=tserver&action=stop",
            "/tail.html?processname=worker",
            "/logtail/worker",
        ):
            r = client.get(path)
            assert r.status_code == 401, (path, r.status_code)
    assert program_pid(stack, "tserver") == tserver, "tserver was stopped without credentials"


def test_xmlrpc_with_the_credentials_works(stack: FaultStack) -> None:
    """The check above can fail: the same call with the right credentials is answered."""
    r = httpx.post(
        f"{stack.supervisor_url}/RPC2",
        content=GET_STATE,
        auth=(stack.user, stack.password),
        headers={"Content-Type": "text/xml"},
        timeout=5,
    )
    assert r.status_code == 200
    assert xmlrpc.client.loads(r.text)[0][0]["statename"] == "RUNNING"


def test_supervisorctl_with_a_wrong_password_fails(stack: FaultStack) -> None:
    tserver = program_pid(stack, "tserver")
    for args in (["status"], ["stop", "tserver"], ["shutdown"]):
        done = subprocess.run(
            [
                str(BIN / "supervisorctl"),
                "-s",
                stack.supervisor_url,
                "-u",
                stack.user,
                "-p",
                "not-" + stack.password,
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=30,
            env=stack.env(),
        )
        output = done.stdout + done.stderr
        assert done.returncode != 0, output
        assert "Server requires authentication" in output, output
        assert "RUNNING" not in output
    assert program_pid(stack, "tserver") == tserver
    assert stack.supervisorctl("status", "tserver").stdout.split()[1] == "RUNNING"
