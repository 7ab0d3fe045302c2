"""HTTP load runs: one request mix, N keep-alive connections, a fixed time; throughput, latency, errors.

wrk (C, one thread) drives the load when it is installed, so the client takes little of the two
cores the product also needs; otherwise a bounded asyncio client in this process does (slower: its
figures are then a floor). Either way the result has the same shape.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Request:
    """One entry of a request mix; `weight` is how many times it appears per cycle."""

    method: str
    path: str
    weight: int = 1


@dataclass
class LoadResult:
    """What one load run measured."""

    tool: str
    connections: int
    seconds: float
    requests: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    statuses: dict[int, int] = field(default_factory=dict)
    socket_errors: dict[str, int] = field(default_factory=dict)  # connect, read, write, timeout

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def unexpected(self, ok: frozenset[int] = frozenset(range(200, 300))) -> int:
        """Responses with a status outside `ok`, plus socket errors."""
        bad_status = sum(n for code, n in self.statuses.items() if code not in ok)
        return bad_status + sum(self.socket_errors.values())

    def row(self) -> dict[str, object]:
        """The raw numbers of this run for the report."""
        return {
            "connections": self.connections,
            "seconds": round(self.seconds, 2),
            "requests": self.requests,
            "req/s": round(self.rps, 1),
            "p50 ms": round(self.p50_ms, 2),
            "p90 ms": round(self.p90_ms, 2),
            "p99 ms": round(self.p99_ms, 2),
            "max ms": round(self.max_ms, 2),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "socket errors": sum(self.socket_errors.values()),
        }


def tool() -> str:
    """The load generator to use: "wrk" if installed, else "asyncio"; BENCH_LOAD=asyncio forces the fallback."""
    forced = os.environ.get("BENCH_LOAD", "")
    if forced in ("wrk", "asyncio"):
        return forced
    return "wrk" if shutil.which("wrk") else "asyncio"


def run_load(base_url: str, mix: list[Request], connections: int, seconds: float) -> LoadResult:
    """Drive `mix` (cycled, each connection starting at a different point) against base_url."""
    if not mix:
        raise ValueError("empty request mix")
    if tool() == "wrk":
        from bench.wrk import run_wrk

        return run_wrk(base_url, mix, connections, seconds)
    from bench.aioload import run_asyncio

    return run_asyncio(base_url, mix, connections, seconds)


def expand(mix: list[Request]) -> list[tuple[str, str]]:
    """The mix as one cycle of (method, path), weights spread out rather than bunched together."""
    total = sum(r.weight for r in mix)
    # Each request's k-th copy goes to position (k + 0.5) / weight of the cycle: an even spread.
    slots = sorted(((k + 0.5) / r.weight, i, (r.method, r.path)) for i, r in enumerate(mix) for k in range(r.weight))
    cycle = [entry for _, _, entry in slots]
    assert len(cycle) == total
    return cycle


def alternating(jobs: list[str], runs: int) -> list[list[str]]:
    """The order of the jobs in each of `runs` rounds: forward, backward, forward... (ABC CBA ABC), so
    that every job sits as often early as late in a round and a drift of the machine hits all alike."""
    return [list(jobs) if i % 2 == 0 else list(reversed(jobs)) for i in range(runs)]
