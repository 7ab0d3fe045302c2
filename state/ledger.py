"""ChunkLedger: what the record of a split calculation knows of its chunks.

A calculation too big for one process is cut into chunks over consecutive ranges of the series'
pair terms (worker/split.py): chunk k covers pairs [start + k*size, start + (k+1)*size), the last
one up to `end`. Chunks finish in any order and on any host; the ledger counts them for the
progress bar, keeps the partial sum of the longest run of finished chunks from the start (an honest
partial sum S_2m of the series, shown while the task runs) and the deliveries of each chunk being
computed (a chunk delivered again means its worker died).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

# Chunks beyond the finished run from the start, or running, that a record may list: a split task
# has a few per worker process; far more is not ours.
_MAX_OPEN = 10_000


@dataclass(frozen=True, slots=True)
class ChunkLedger:
    """The chunks of one split task (immutable: each change is a new ledger)."""

    start: int  # first pair of chunk 0 (the pairs before it were summed when the task was planned)
    size: int  # pairs per chunk
    end: int  # pairs planned in all: the chunks cover [start, end)
    prefix_value: float  # 4 * sum of t_j for j < prefix_end: the partial sum S_2m shown while running
    done: int = 0  # chunks finished
    pairs_done: int = 0  # pairs summed in finished chunks
    prefix: int = 0  # chunks 0 .. prefix-1 are all finished
    pending: dict[int, float] = field(default_factory=dict)  # finished beyond the prefix: k -> 4 * its sum
    running: dict[int, int] = field(default_factory=dict)  # being computed: k -> deliveries so far
    generation: int = 0  # bumped when chunks are sent again (their task ids change with it)

    @property
    def total(self) -> int:
        """Chunks planned."""
        return math.ceil((self.end - self.start) / self.size)

    @property
    def prefix_end(self) -> int:
        """m of the shown partial sum S_2m: the first pair not in the finished run from the start."""
        return min(self.start + self.prefix * self.size, self.end)

    def bounds(self, k: int) -> tuple[int, int]:
        """Chunk k's pairs [j0, j1)."""
        j0 = self.start + k * self.size
        return j0, min(j0 + self.size, self.end)

    def started(self, k: int) -> tuple[ChunkLedger, int]:
        """Chunk k delivered (again): the new ledger and its deliveries so far."""
        deliveries = self.running.get(k, 0) + 1
        return replace(self, running={**self.running, k: deliveries}), deliveries

    def finished(self, k: int, value: float) -> ChunkLedger:
        """Chunk k finished with 4 * its sum = `value` (a second report of the same chunk changes nothing)."""
        running = {c: n for c, n in self.running.items() if c != k}
        if k < self.prefix or k in self.pending:
            return replace(self, running=running)
        j0, j1 = self.bounds(k)
        pending = {**self.pending, k: value}
        prefix, prefix_value = self.prefix, self.prefix_value
        while prefix in pending:
            prefix_value += pending.pop(prefix)
            prefix += 1
        return replace(
            self,
            done=self.done + 1,
            pairs_done=self.pairs_done + j1 - j0,
            prefix=prefix,
            prefix_value=prefix_value,
            pending=pending,
            running=running,
        )

    def extended(self, end: int) -> ChunkLedger:
        """More chunks planned, up to `end` (the digits were not proven at the old end)."""
        return replace(self, end=max(end, self.end))

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start,
            "size": self.size,
            "end": self.end,
            "prefix_value": self.prefix_value,
            "done": self.done,
            "pairs_done": self.pairs_done,
            "prefix": self.prefix,
            "pending": {str(k): v for k, v in self.pending.items()},
            "running": {str(k): v for k, v in self.running.items()},
            "generation": self.generation,
        }

    @classmethod
    def from_dict(cls, data: object) -> ChunkLedger:
        """Parse and check a ledger read from the store; ValueError on anything that is not one."""
        if not isinstance(data, dict):
            raise ValueError("chunks: not an object")
        names = ("start", "size", "end", "done", "pairs_done", "prefix", "generation")
        ints: dict[str, Any] = {name: data.get(name) for name in names}
        if any(type(v) is not int or v < 0 for v in ints.values()) or ints["size"] == 0 or ints["end"] < ints["start"]:
            raise ValueError("chunks: bad counts")
        value: Any = data.get("prefix_value")
        if type(value) not in (int, float) or not math.isfinite(value):
            raise ValueError("chunks: bad prefix_value")
        pending, running = _int_map(data.get("pending"), float), _int_map(data.get("running"), int)
        return cls(prefix_value=float(value), pending=pending, running=running, **ints)


def _int_map(data: object, kind: type) -> dict[int, Any]:
    if not isinstance(data, dict) or len(data) > _MAX_OPEN:
        raise ValueError("chunks: bad map")
    result = {}
    for key, value in data.items():
        if not (isinstance(key, str) and key.isdigit() and len(key) < 10) or type(value) not in (int, float):
            raise ValueError("chunks: bad map entry")
        if not math.isfinite(value) or (kind is int and type(value) is not int):
            raise ValueError("chunks: bad map value")
        result[int(key)] = kind(value)
    return result
