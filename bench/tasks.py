"""Tasks to read: started through the API and waited for, so their files are the product's own."""

from __future__ import annotations

import time

import httpx


class TaskError(RuntimeError):
    """Tasks could not be started or did not finish in time."""


def finished_tasks(api: str, count: int, decimal: int = 3, timeout: float = 60.0) -> list[str]:
    """Start `count` tasks and return their ids once every one is SUCCESS."""
    with httpx.Client(timeout=10) as client:
        ids = []
        for _ in range(count):
            r = client.post(f"{api}/calcpi/{decimal}")
            if r.status_code != 202:
                raise TaskError(f"POST /calcpi/{decimal} answered {r.status_code}: {r.text[:200]}")
            ids.append(r.json()["id"])
        deadline = time.monotonic() + timeout
        pending = set(ids)
        while pending:
            if time.monotonic() > deadline:
                raise TaskError(f"{len(pending)} of {count} tasks not done after {timeout:.0f} s")
            for task_id in list(pending):
                status = client.get(f"{api}/task/{task_id}").json()["status"]
                if status == "SUCCESS":
                    pending.discard(task_id)
                elif status == "FAILURE":
                    raise TaskError(f"task {task_id} failed")
            time.sleep(0.05)
    return ids
