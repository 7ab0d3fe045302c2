"""What the store keeps of one task: TaskState, its id rules and its statuses.

The status names and which of them are final are the contract's (rpcinterface.thrift's constants):
the gateway shows them and the Thrift server answers with them, so they are defined there once.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from typing import Any

from RPC.constants import FAILURE, FINAL_STATUSES, MAX_SUPPORTED_DECIMAL, PROGRESS, REVOKED, STATUSES, SUCCESS, WAITING
from state.errors import UnknownTask
from state.ledger import ChunkLedger

__all__ = [
    "FAILURE",
    "FINAL_STATUSES",
    "PROGRESS",
    "REVOKED",
    "STATUSES",
    "SUCCESS",
    "WAITING",
    "TaskState",
    "check_task_id",
    "utcnow",
]

#: Host names a record keeps (a split task run by more hosts than this lists the first ones).
MAX_HOSTS = 64
# Canonical lower-case UUID text only: an id becomes a file name or a key, so nothing else may pass.
TASK_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def utcnow() -> str:
    """The current time as ISO 8601 in UTC, with its offset."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def check_task_id(task_id: object) -> str:
    """Return task_id if it is a canonical UUID string, else raise UnknownTask."""
    if not isinstance(task_id, str) or len(task_id) != 36 or not TASK_ID.fullmatch(task_id):
        raise UnknownTask("no task with this id: a task id is a UUID such as 123e4567-e89b-12d3-a456-426614174000")
    return task_id


@dataclass(frozen=True, slots=True)
class TaskState:
    """One task's state document."""

    id: str
    status: str
    decimal: int
    pushqtime: str
    starttime: str | None = None
    stoptime: str | None = None
    progress: float = 0.0
    result: float | None = None
    digits: str | None = None
    error: str | None = None
    terms: int = 0
    attempts: int = 0
    heartbeat: str | None = None
    hosts: tuple[str, ...] = ()  # the workers' host names that computed it (or its chunks)
    chunks: ChunkLedger | None = None  # a split calculation's chunks (None: computed in one piece)

    @property
    def is_final(self) -> bool:
        """True once the task has ended (SUCCESS, FAILURE or REVOKED)."""
        return self.status in FINAL_STATUSES

    def evolve(self, **changes: Any) -> TaskState:
        """A copy with the given fields changed."""
        return replace(self, **changes)

    def to_json(self) -> bytes:
        """The document's bytes."""
        # Every field but two is a plain str/int/float/None: no deep copy (dataclasses.asdict) needed.
        values = {name: getattr(self, name) for name in _FIELD_NAMES}
        values["hosts"] = list(self.hosts)
        values["chunks"] = None if self.chunks is None else self.chunks.to_dict()
        return json.dumps(values, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> TaskState:
        """Parse and type-check a document; ValueError on anything malformed."""
        data = json.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        values = {k: v for k, v in data.items() if k in _FIELD_NAMES}
        hosts = values.pop("hosts", [])
        if not isinstance(hosts, list) or len(hosts) > MAX_HOSTS or not all(_is_host(h) for h in hosts):
            raise ValueError("bad hosts")
        values["hosts"] = tuple(hosts)
        if values.get("chunks") is not None:
            values["chunks"] = ChunkLedger.from_dict(values["chunks"])
        try:
            state = cls(**values)
        except TypeError as exc:  # a required field is missing
            raise ValueError(str(exc)) from None
        state._check()
        return state

    def _check(self) -> None:
        check_task_id(self.id)
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if type(self.decimal) is not int or not 1 <= self.decimal <= MAX_SUPPORTED_DECIMAL:
            raise ValueError("bad decimal")
        for name in ("pushqtime", "starttime", "stoptime", "heartbeat"):
            value = getattr(self, name)
            if value is None and name != "pushqtime":
                continue
            if not isinstance(value, str):
                raise ValueError(f"bad {name}")
            datetime.fromisoformat(value)
        if not _is_number(self.progress) or not 0 <= self.progress <= 100:
            raise ValueError("bad progress")
        if self.result is not None and not _is_number(self.result):
            raise ValueError("bad result")
        for name in ("digits", "error"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), str):
                raise ValueError(f"bad {name}")
        for name in ("terms", "attempts"):
            if type(getattr(self, name)) is not int or getattr(self, name) < 0:
                raise ValueError(f"bad {name}")


_FIELD_NAMES = tuple(f.name for f in fields(TaskState))


def _is_host(name: object) -> bool:
    return isinstance(name, str) and 0 < len(name) <= 255


def _is_number(value: object) -> bool:
    return type(value) in (int, float) and math.isfinite(value)  # type: ignore[arg-type]  # int or float, checked
