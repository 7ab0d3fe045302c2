"""Hostile HTTP input against the live gateway: a property-based run over its OpenAPI schema
(schemathesis), and over-long, oddly encoded or huge requests sent byte for byte.

Every answer must be quick, never a 5xx, and documented: its status code, content type, headers and
body must match the schema the gateway publishes.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.conftest import FaultStack, running_stack

pytestmark = pytest.mark.timeout(180)

MAX_DECIMAL = 4  # keeps the tasks the run creates cheap
EXAMPLES = 30  # per operation and generation mode (positive, negative)
SLOW = 5.0  # seconds: an answer that takes longer is a failure ("never a hang")


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(tmp_path_factory.mktemp("http"), broker_url, MAX_DECIMAL=str(MAX_DECIMAL)) as s:
        yield s


def test_property_based_run_over_the_openapi_schema(stack: FaultStack) -> None:
    import schemathesis
    from schemathesis import checks
    from schemathesis.generation.modes import GenerationMode

    schema = schemathesis.openapi.from_url(f"{stack.api}/openapi.json")
    streams = event_streams(httpx.get(f"{stack.api}/openapi.json", timeout=10).json())
    run_checks = [
        checks.not_a_server_error,
        checks.status_code_conformance,
        checks.content_type_conformance,
        checks.response_headers_conformance,
        checks.response_schema_conformance,
        checks.negative_data_rejection,  # input outside the schema is refused with a 4xx
        checks.positive_data_acceptance,  # input the schema allows is not refused
    ]
    failures: dict[str, str] = {}
    calls = 0
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.label in streams:
            continue  # an endless event stream cannot be read to its end and validated
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            calls += explore(operation, mode, run_checks, failures)
    took = time.monotonic() - started
    print(
        f"schemathesis: {calls} calls in {took:.1f} s, {len(failures)} distinct failures"
        + (f" (not called: the event streams {sorted(streams)})" if streams else "")
    )
    assert took < 90
    assert calls > 100  # it really ran: a broken schema or loader would make few or no calls
    assert not failures, "schemathesis found:\n" + "\n".join(f"{k}\n    {v}" for k, v in failures.items())


def explore(operation, mode, run_checks: list, failures: dict[str, str]) -> int:
    """Call one operation with EXAMPLES generated requests, collecting each distinct failure; the calls made."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    calls = 0
    slow = False

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def call(case) -> None:
        nonlocal calls, slow
        if slow:
            return  # one hanging call is reported; waiting for thirty more would prove nothing
        calls += 1
        started = time.monotonic()
        try:
            case.call_and_validate(checks=run_checks, timeout=SLOW)
        except BaseException as exc:  # noqa: BLE001 - every distinct failure is collected
            if time.monotonic() - started >= SLOW:
                slow = True
            lines = [line.strip() for line in str(exc).splitlines()]
            headline = next((line for line in lines if line.startswith("- ")), type(exc).__name__)
            key = f"{operation.label} [{mode.value}] {headline}"
            failures.setdefault(key, next((line for line in lines if line.startswith("curl ")), ""))

    with contextlib.suppress(Unsatisfiable):  # nothing to vary (no parameters), or no value outside the schema
        call()
    return calls


def event_streams(openapi: dict) -> set[str]:
    """Labels ("GET /path") of the operations that answer with a text/event-stream."""
    return {
        f"{method.upper()} {path}"
        for path, item in openapi["paths"].items()
        for method, op in item.items()
        if any("text/event-stream" in r.get("content", {}) for r in op.get("responses", {}).values())
    }


def raw_request(stack: FaultStack, target: bytes, method: bytes = b"GET") -> tuple[int, bytes, bytes, float]:
    """Send one request byte for byte (no client-side normalising); status, headers, body, seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", stack.api_port), timeout=5) as sock:
        sock.sendall(method + b" " + target + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head, body, time.monotonic() - started


TASK = b"00000000-0000-4000-8000-000000000000"
HOSTILE_TARGETS = {
    "10 kB task id": b"/task/" + b"a" * 10_000,
    "100 kB task id": b"/task/" + b"a" * 100_000,
    "1 MB path": b"/task/" + b"a" * 1_000_000,
    "10 kB query": b"/alltasks?status=" + b"a" * 10_000,
    "100 kB query": b"/alltasks?x=" + b"a" * 100_000,
    "5000-digit decimal": b"/calcpi/" + b"9" * 5000,
    "100 kB decimal": b"/calcpi/" + b"9" * 100_000,
    "-10^20 decimal": b"/calcpi/-99999999999999999999",
    "1e308 decimal": b"/calcpi/1e308",
    "NaN decimal": b"/calcpi/NaN",
    "Infinity decimal": b"/calcpi/Infinity",
    "%00 decimal": b"/calcpi/%00",
    "%FF decimal": b"/calcpi/%FF",
    "overlong UTF-8 digit": b"/calcpi/%C0%B1",
    "fullwidth digit": b"/calcpi/%EF%BC%95",
    "%00 task id": b"/task/%00",
    "%FF task id": b"/task/%FF",
    "overlong UTF-8 dots": b"/task/%C0%AE%C0%AE%C0%AF",
    "uuid + %00": b"/task/" + TASK + b"%00",
    "uuid + raw NUL": b"/task/" + TASK + b"\x00",
    "raw 0xFF bytes": b"/task/\xff\xfe",
    "raw control byte": b"/task/\x01",
    "encoded traversal": b"/task/..%2F..%2Fetc%2Fpasswd",
    "traversal": b"/task/../../etc/passwd",
    "huge limit": b"/alltasks?limit=" + b"9" * 400,
    "huge offset": b"/alltasks?offset=99999999999999999999",
    "negative offset": b"/alltasks?offset=-1",
    "%FF status": b"/alltasks?status=%FF",
    "%00 status": b"/alltasks?status=%00",
    "float limit": b"/alltasks?limit=1e3",
}


@pytest.mark.parametrize("method", [b"GET", b"POST", b"DELETE"])
def test_hostile_urls_get_a_quick_clear_4xx(stack: FaultStack, method: bytes) -> None:
    answers = {}
    for label, target in HOSTILE_TARGETS.items():
        status, head, body, took = raw_request(stack, target, method)
        if 300 <= status < 400:  # a slash redirect: where it leads must be refused as well
            location = next(
                line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"location:")
            )
            status, head, body, more = raw_request(stack, location.split(b"127.0.0.1:%d" % stack.api_port)[-1], method)
            took += more
        answers[label] = status
        assert 400 <= status < 500, f"{method.decode()} {label}: {status} {body[:200]!r}"
        assert took < 2, f"{method.decode()} {label}: {took:.2f} s"
        if b"application/json" in head:
            assert httpx.Response(status, content=body).json()["detail"], body
    assert httpx.get(f"{stack.api}/livez", timeout=5).status_code == 200
    print(f"{method.decode()}: " + ", ".join(f"{k}={v}" for k, v in answers.items()))
