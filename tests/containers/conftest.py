"""Session fixtures of the container stage: the image built from our Dockerfile, and compose stacks
brought up under unique project names and always torn down (also when a check or the start fails).

Why the stacks are a table (tests/containers/stacks.py): a set of compose files is one entry in
STACKS, and every test that takes `stack` runs against every entry, one stack up at a time. A test
that only means something for some sets says which with `@pytest.mark.stacks(...)`: it is left out
(deselected, not skipped) for the others. The figures (image size, `up` to the first answered
GET /) go to the terminal summary and to run/test-containers.txt, whether or not pytest captures
output.
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.containers import images
from tests.containers.engine import REPO, Compose, require_engine, until
from tests.containers.stack import Stack
from tests.containers.stacks import STACKS

IMAGE = "pi-trio:latest"
BASE_IMAGE = "python:3.11-slim"
REPORT = Path(os.environ.get("PI_CONTAINERS_REPORT", REPO / "run" / "test-containers.txt"))


class Report:
    """The stage's figures, kept in order; the file is rewritten at every line so that a stage that
    fails half-way still leaves what it measured."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, line: str) -> None:
        self.lines.append(line)
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        REPORT.write_text("".join(f"{x}\n" for x in self.lines))


REPORTED = Report()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "stacks(*names): the test runs only against these STACKS entries")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The image build (up to 15 min on a fresh machine) and a stack's start run inside the first
    test that needs them: these tests get that bound instead of pytest-timeout's 300 s. A test
    marked `stacks(...)` is deselected for the other entries."""
    here = Path(__file__).parent
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.timeout(1200))
        marker = item.get_closest_marker("stacks")
        callspec = getattr(item, "callspec", None)
        name = callspec.params.get("stack") if callspec else None
        unknown = set(marker.args) - set(STACKS) if marker else set()
        if unknown:
            raise pytest.UsageError(f"{item.nodeid}: no such STACKS entry: {sorted(unknown)}")
        (dropped if marker and name is not None and name not in marker.args else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORTED.lines:
        terminalreporter.write_sep("-", "container stage figures")
        for line in REPORTED.lines:
            terminalreporter.write_line(line)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """A failed check of a stack carries the state and the last log lines of each of its containers:
    a CI run is read once, after the stack is gone, so what the containers said must be in the report
    (a broker that did not come back, a worker that crashed)."""
    report: pytest.TestReport = yield
    stack = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(stack, Stack):
        try:
            report.sections.append(("containers", stack.compose.diagnostics()))
        except Exception as exc:  # noqa: BLE001 - the diagnostics must never hide the failure itself
            report.sections.append(("containers", f"could not collect the containers' logs: {exc!r}"))
    return report


def _free_ports(count: int) -> list[int]:
    """Ports on the host that nothing listens on now (held open together, so they differ)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("0.0.0.0", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@pytest.fixture(scope="session")
def engine() -> None:
    require_engine()


@pytest.fixture(scope="session")
def image(engine: None) -> str:
    """Our image, built from the Dockerfile as it is (the build's layer cache may be reused)."""
    REPORTED.add(images.build(IMAGE, BASE_IMAGE).describe())
    return IMAGE


@pytest.fixture(scope="session", params=sorted(STACKS))
def stack(request: pytest.FixtureRequest, image: str) -> Iterator[Stack]:
    """A stack of one STACKS entry, up and answering GET / through its published port."""
    name: str = request.param
    spec = STACKS[name]
    prefix = os.environ.get("PI_CONTAINERS_PROJECT_PREFIX", f"pitest{os.getpid()}")
    api_port, supervisor_port = _free_ports(2)
    env = {
        "SUPERVISOR_USER": "admin",
        **{password: secrets.token_hex(12) for password in spec.passwords},
        "API_PUBLISH_PORT": str(api_port),
        "SUPERVISOR_PUBLISH_PORT": str(supervisor_port),
        "MAX_DECIMAL": "11",  # 11 places take ~1 min: a task still running when the stack stops
        **spec.env,
    }
    compose = Compose(f"{prefix}-{name}", spec.files, env, up_args=spec.up_args, down_args=spec.down_args)
    stack = Stack(compose, spec, api_port, supervisor_port, env["SUPERVISOR_USER"], env["SUPERVISOR_PASSWORD"])
    try:
        started = time.monotonic()
        compose.up()
        try:
            until(stack.answers, 180, "GET / to answer 200 through the published port", interval=0.1)
        except pytest.fail.Exception as exc:
            pytest.fail(f"{exc}\n{compose.diagnostics()}")
        REPORTED.add(
            f"stack {name} ({' + '.join(spec.files)}): from `up` to the first answered GET /: "
            f"{time.monotonic() - started:.1f} s"
        )
        yield stack
    finally:
        compose.teardown()
