"""DELETE /task/{id} through the real stack: waiting, running, finished and unknown tasks."""

from __future__ import annotations

import time

import httpx

from testing.stack import Stack
from testing.waiting import wait_for
from tests.e2e.test_routes import wait_done


def start(stack: Stack, decimal: int) -> str:
    r = httpx.post(f"{stack.api}/calcpi/{decimal}", timeout=10)
    assert r.status_code == 202
    return r.json()["id"]


def status(stack: Stack, task_id: str) -> dict:
    return httpx.get(f"{stack.api}/task/{task_id}", timeout=5).json()


def test_cancel_running_and_waiting_tasks(stack: Stack) -> None:
    # Two long tasks occupy both worker processes, so a third one waits.
    running = [start(stack, 10), start(stack, 10)]
    for task_id in running:
        wait_for(lambda t=task_id: status(stack, t)["status"] == "PROGRESS", 30, "a d=10 task to start")
    waiting = start(stack, 3)
    assert status(stack, waiting)["status"] == "WAITING"

    r = httpx.delete(f"{stack.api}/task/{waiting}", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "REVOKED" and r.json()["stoptime"] is not None

    started = time.monotonic()
    r = httpx.delete(f"{stack.api}/task/{running[0]}", timeout=10)
    took = time.monotonic() - started
    body = r.json()
    assert r.status_code == 200 and body["status"] == "REVOKED", body
    assert body["stoptime"] is not None and body["digits"] is None and body["error"] == "cancelled while running"
    print(f"cancel of a running d=10 task answered in {took * 1000:.0f} ms")
    terms = status(stack, running[0])["terms"]
    time.sleep(0.5)
    after = status(stack, running[0])
    assert after["status"] == "REVOKED" and after["terms"] == terms, "the worker kept computing"

    httpx.delete(f"{stack.api}/task/{running[1]}", timeout=10)
    # The cancelled waiting task is skipped when its message arrives; the queue moves on.
    follow = start(stack, 2)
    assert wait_done(stack, follow)["digits"] == "3.14"
    assert status(stack, waiting)["status"] == "REVOKED"


def test_cancel_a_finished_task_is_409(stack: Stack) -> None:
    task_id = start(stack, 2)
    wait_done(stack, task_id)
    r = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
    assert r.status_code == 409
    assert r.json() == {"detail": f"task {task_id} has already ended: SUCCESS"}
    assert status(stack, task_id)["status"] == "SUCCESS"


def test_cancel_unknown_or_malformed_is_404(stack: Stack) -> None:
    for task_id in ("00000000-0000-4000-8000-000000000000", "nope", "x" * 1000):
        r = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
        assert r.status_code == 404 and r.json()["detail"].startswith("no task with")
