"""Running one calculation through a product and timing it: the shared helper of the split sections."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import httpx

from bench.digits import expected_digits


class SplitError(RuntimeError):
    """A calculation did not reach SUCCESS in time, or its digits were wrong."""


def split_env(extra: dict[str, str], **more: str) -> dict[str, str]:
    """Settings of a split product: every decimal allowed, the plan's split settings, then `more`."""
    return {"MAX_DECIMAL": "12", **extra, **more}


def run_task(api: str, decimal: int, timeout: float, poll: float) -> dict[str, Any]:
    """POST /calcpi/{decimal}, poll until it ends; wall seconds, the record's own queued->stopped seconds,
    its chunks and hosts. SplitError unless SUCCESS with pi's digits."""
    with httpx.Client(base_url=api, timeout=10) as client:
        start = time.perf_counter()
        created = client.post(f"/calcpi/{decimal}")
        if created.status_code != 202:
            raise SplitError(f"POST /calcpi/{decimal} answered {created.status_code}: {created.text[:200]}")
        task_id = created.json()["id"]
        while True:
            body = client.get(f"/task/{task_id}").json()
            if body["status"] not in ("WAITING", "PROGRESS"):
                wall = time.perf_counter() - start
                break
            if time.perf_counter() - start > timeout:
                client.delete(f"/task/{task_id}")
                raise SplitError(
                    f"d={decimal} not done after {timeout:.0f} s (status {body['status']}, "
                    f"{body.get('chunks_done')} of {body.get('chunks_total')} chunks)"
                )
            time.sleep(poll)
    if body["status"] != "SUCCESS" or body["digits"] != expected_digits(decimal):
        raise SplitError(f"d={decimal}: {body['status']} with digits {body.get('digits')!r} ({body.get('error')})")
    record = (datetime.fromisoformat(body["stoptime"]) - datetime.fromisoformat(body["pushqtime"])).total_seconds()
    return {
        "decimal": decimal,
        "wall s": round(wall, 3),
        "record s": round(record, 3),
        "chunks": body.get("chunks_total", 0),
        "hosts": len(body.get("hosts") or []),
        "attempts": body.get("attempts", 0),
        "terms": body["terms"],
        "digits": body["digits"],
    }


def aggregate(by_role: dict[str, float]) -> dict[str, float]:
    """CPU seconds by program: worker (main + pool), chunks (main + pool), tserver, gateway, RabbitMQ, Redis."""
    out: dict[str, float] = {}
    for role, seconds in by_role.items():
        program = role.split(" child")[0]
        out[program] = out.get(program, 0.0) + seconds
    return out
