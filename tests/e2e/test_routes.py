"""Every REST route through the real stack: gateway -> Thrift server -> Celery worker -> state file."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import httpx
import pytest

from testing.stack import Stack
from testing.waiting import wait_for

PI = "3.14159265358979323846264338327950288419716939937510"
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


def rounded_pi(decimal: int) -> str:
    """Pi correctly rounded to `decimal` places, from the reference digits (round half up; no ties)."""
    from decimal import ROUND_HALF_UP, Decimal

    return str(Decimal(PI).quantize(Decimal(1).scaleb(-decimal), rounding=ROUND_HALF_UP))


def wait_done(stack: Stack, task_id: str, timeout: float = 60) -> dict:
    def done() -> dict | None:
        body = httpx.get(f"{stack.api}/task/{task_id}", timeout=5).json()
        return body if body["status"] in ("SUCCESS", "FAILURE") else None

    return wait_for(done, timeout, f"task {task_id} to finish", interval=0.05)  # type: ignore[return-value] - wait_for returns the predicate's truthy value, here the body


def parse_utc(value: str) -> datetime:
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    assert moment.utcoffset() is not None and moment.utcoffset().total_seconds() == 0, value
    return moment


def test_host_status(stack: Stack) -> None:
    r = httpx.get(stack.api + "/", timeout=5)
    assert r.status_code == 200
    body = r.json()
    assert set(body) == {"hostname", "ip", "cpu", "memory", "disk"}
    assert body["hostname"] and body["ip"]
    assert 0 <= body["cpu"]["percent"] <= 100 and body["cpu"]["count"] >= 1
    assert len(body["cpu"]["load_average"]) == 3
    assert 0 < body["memory"]["available"] <= body["memory"]["total"]
    assert body["disk"]["path"] == stack.disk_path
    assert 0 < body["disk"]["free"] <= body["disk"]["total"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_start_answers_202_with_the_waiting_task(stack: Stack, method: str) -> None:
    before = datetime.now(UTC)
    r = httpx.request(method, stack.api + "/calcpi/3", timeout=10)
    assert r.status_code == 202, r.text
    body = r.json()
    assert set(body) == {"id", "status", "decimal", "pushqtime"}
    assert UUID.match(body["id"]) and body["status"] == "WAITING" and body["decimal"] == 3
    assert parse_utc(body["pushqtime"]) >= before.replace(microsecond=0)
    assert wait_done(stack, body["id"])["digits"] == "3.142"


@pytest.mark.parametrize("decimal", range(1, 9))
def test_digits_are_pi_correctly_rounded(stack: Stack, decimal: int) -> None:
    task = httpx.post(f"{stack.api}/calcpi/{decimal}", timeout=10).json()
    body = wait_done(stack, task["id"], timeout=120)
    expected = rounded_pi(decimal)
    assert body["status"] == "SUCCESS", body
    assert body["digits"] == expected
    assert len(body["digits"].split(".")[1]) == decimal
    assert body["result"] == float(expected)
    assert body["progress"] == 100
    assert body["terms"] > 0 and body["error"] is None
    queued, started, stopped = (parse_utc(body[k]) for k in ("pushqtime", "starttime", "stoptime"))
    assert queued <= started <= stopped


def test_progress_is_reported_while_running_and_never_goes_back(stack: Stack) -> None:
    task = httpx.post(f"{stack.api}/calcpi/9", timeout=10).json()
    seen: list[dict] = []

    def progressed() -> bool:
        body = httpx.get(f"{stack.api}/task/{task['id']}", timeout=5).json()
        seen.append(body)
        return body["status"] == "PROGRESS" and 5 < body["progress"] < 100

    wait_for(progressed, 60, "task at d=9 to report progress", interval=0.02)
    for _ in range(20):
        seen.append(httpx.get(f"{stack.api}/task/{task['id']}", timeout=5).json())
    progress = [b["progress"] for b in seen]
    assert progress == sorted(progress)
    running = [b for b in seen if b["status"] == "PROGRESS" and b["terms"] > 0]
    assert running and all(b["digits"] is None and b["stoptime"] is None for b in running)
    assert all(b["starttime"] is not None for b in running)
    # The intermediate result is a partial sum rounded to 9 places: close to pi, not yet proven.
    # |S(n) - pi| < 1/n for the Leibniz partial sums; the value shown is rounded to 9 places.
    assert all(abs(b["result"] - float(PI)) <= 1 / b["terms"] + 1e-9 for b in running)
    assert all(round(b["result"], 9) == b["result"] for b in running)
    stack.supervisorctl("status")  # the stack is still healthy while it computes


def test_waiting_task_shows_nulls_until_it_runs(stack: Stack) -> None:
    created = httpx.post(f"{stack.api}/calcpi/2", timeout=10).json()
    body = httpx.get(f"{stack.api}/task/{created['id']}", timeout=5).json()
    assert set(body) == {
        "id",
        "status",
        "decimal",
        "progress",
        "result",
        "digits",
        "terms",
        "error",
        "attempts",
        "stalled",
        "heartbeat",
        "pushqtime",
        "starttime",
        "stoptime",
        "chunks_done",
        "chunks_total",
        "hosts",
    }
    if body["status"] == "WAITING":
        assert body["starttime"] is None and body["stoptime"] is None and body["digits"] is None
        assert (body["chunks_done"], body["chunks_total"], body["hosts"]) == (0, 0, [])
    assert wait_done(stack, created["id"])["digits"] == "3.14"


def test_alltasks_lists_newest_first_with_paging(stack: Stack) -> None:
    ids = [httpx.post(f"{stack.api}/calcpi/4", timeout=10).json()["id"] for _ in range(3)]
    for task_id in ids:
        wait_done(stack, task_id)
    for path in ("/alltasks", "/alltasks/"):
        r = httpx.get(stack.api + path, timeout=10)
        assert r.status_code == 200
        listed = r.json()
        times = [parse_utc(t["pushqtime"]) for t in listed]
        assert times == sorted(times, reverse=True)
        assert [t["id"] for t in listed[:3]] == ids[::-1]
        assert int(r.headers["X-Total-Count"]) == len(listed)
    page = httpx.get(stack.api + "/alltasks", params={"limit": 2, "offset": 1}, timeout=10).json()
    assert [t["id"] for t in page] == [ids[1], ids[0]]
    done = httpx.get(stack.api + "/alltasks", params={"status": "SUCCESS"}, timeout=10).json()
    assert done and all(t["status"] == "SUCCESS" for t in done)


@pytest.mark.parametrize(
    "value", ["abc", "0", "-1", "1.5", "11", "128", "99999999999999999999999", "1e3", "%00", "0x5", "1,5"]
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_bad_decimal_is_422_naming_the_range(stack: Stack, method: str, value: str) -> None:
    before = set(stack.state_dir.glob("*.json"))
    r = httpx.request(method, f"{stack.api}/calcpi/{value}", timeout=10)
    assert r.status_code == 422, r.text
    assert r.json() == {"detail": "decimal must be an integer from 1 to 10"}
    assert set(stack.state_dir.glob("*.json")) == before, "a rejected request created a task"


@pytest.mark.parametrize(
    "task_id",
    [
        "00000000-0000-4000-8000-000000000000",
        "not-a-uuid",
        "..%2F..%2Fetc%2Fpasswd",
        "....",
        "5B2F3C1E-8A4D-4F7E-9C0B-2D1E3F4A5B6C",
        "x" * 5000,
    ],
)
def test_unknown_or_malformed_task_is_404(stack: Stack, task_id: str) -> None:
    r = httpx.get(f"{stack.api}/task/{task_id}", timeout=10)
    assert r.status_code == 404
    # Decoded slashes make some of these another path, which no route matches: 404 all the same.
    assert r.json()["detail"].startswith("no task with") or r.json() == {"detail": "Not Found"}


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": 1001}, {"offset": -1}, {"status": "DONE"}, {"limit": "x"}])
def test_bad_listing_parameters_are_422(stack: Stack, params: dict) -> None:
    r = httpx.get(stack.api + "/alltasks", params=params, timeout=10)
    assert r.status_code == 422
    assert isinstance(r.json()["detail"], str) and r.json()["detail"]


def test_state_files_are_valid_json_and_atomic(stack: Stack) -> None:
    task = httpx.post(f"{stack.api}/calcpi/5", timeout=10).json()
    wait_done(stack, task["id"])
    if stack.state_backend == "redis":  # one document per task under the stack's key prefix
        documents = stack.redis_documents()
        assert task["id"] in documents
        for task_id, raw in documents.items():
            data = json.loads(raw)
            assert data["id"] == task_id and data["status"] in ("WAITING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED")
        return
    names = [p.name for p in stack.state_dir.iterdir()]
    assert f"{task['id']}.json" in names
    # A running task's writer may hold a temporary file for an instant; a leftover one stays.
    temporary = {n for n in names if n.endswith(".tmp")}
    time.sleep(0.5)
    leftovers = temporary & {p.name for p in stack.state_dir.iterdir()}
    assert not leftovers, f"temporary files were left behind: {leftovers}"
    for path in stack.state_dir.glob("*.json"):
        data = json.loads(path.read_text())
        assert data["id"] == path.stem and data["status"] in ("WAITING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED")


def test_docs_and_openapi_describe_every_route(stack: Stack) -> None:
    assert httpx.get(stack.api + "/docs", timeout=5).status_code == 200
    spec = httpx.get(stack.api + "/openapi.json", timeout=5).json()
    assert {"/", "/calcpi/{decimal}", "/task/{id}", "/alltasks"} <= set(spec["paths"])
    assert set(spec["paths"]["/calcpi/{decimal}"]) == {"get", "post"}
    for path, ops in spec["paths"].items():
        for op in ops.values():
            ok = [c for c in op["responses"] if c.startswith("2")]
            assert ok and "content" in op["responses"][ok[0]], path


def test_supervisor_ui_requires_credentials(stack: Stack) -> None:
    assert httpx.get(stack.supervisor_url, timeout=5).status_code == 401
    assert httpx.get(stack.supervisor_url, auth=("admin", "admin"), timeout=5).status_code == 401
    page = httpx.get(stack.supervisor_url, auth=(stack.user, stack.password), timeout=5)
    assert page.status_code == 200 and "tserver" in page.text and "worker" in page.text
    status = stack.supervisorctl("status").stdout
    assert re.search(r"tserver\s+RUNNING", status) and re.search(r"worker\s+RUNNING", status)
    log = httpx.get(
        f"{stack.supervisor_url}/tail.html",
        params={"processname": "tserver"},
        auth=(stack.user, stack.password),
        timeout=5,
    )
    assert log.status_code == 200 and "serving RPCcelery" in log.text
