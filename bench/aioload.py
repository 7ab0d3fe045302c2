"""The fallback load generator when wrk is missing: asyncio, raw HTTP/1.1 keep-alive connections.

Hand-written rather than httpx: a general client spends far more CPU per request than the server
under test, on a machine with two cores that both have to share. It speaks just what the gateway
answers (Content-Length bodies), and every run is bounded in time.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from bench.load import LoadResult, Request, expand

_READ_TIMEOUT = 10.0


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an ascending list (0 for an empty one)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def _encode(method: str, path: str, host: str, port: int) -> bytes:
    length = "Content-Length: 0\r\n" if method == "POST" else ""
    return f"{method} {path} HTTP/1.1\r\nHost: {host}:{port}\r\n{length}\r\n".encode()


class _Run:
    def __init__(self, host: str, port: int, mix: list[tuple[str, str]], deadline: float) -> None:
        self.host, self.port, self.deadline = host, port, deadline
        self.cycle = itertools.cycle([_encode(m, p, host, port) for m, p in mix])
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.errors = {"connect": 0, "read": 0, "write": 0, "timeout": 0}

    async def connection(self) -> None:
        reader: asyncio.StreamReader | None = None
        writer: asyncio.StreamWriter | None = None
        while time.monotonic() < self.deadline:
            if reader is None or writer is None:
                try:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                except OSError:
                    self.errors["connect"] += 1
                    await asyncio.sleep(0.01)
                    continue
            start = time.perf_counter()
            try:
                writer.write(next(self.cycle))
                status = await asyncio.wait_for(self._response(reader), _READ_TIMEOUT)
            except TimeoutError:
                self.errors["timeout"] += 1
                writer.close()
                writer = None
                continue
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                self.errors["read"] += 1
                writer.close()
                writer = None
                continue
            self.latencies.append(time.perf_counter() - start)
            self.statuses[status] = self.statuses.get(status, 0) + 1
        if writer is not None:
            writer.close()

    @staticmethod
    async def _response(reader: asyncio.StreamReader) -> int:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if length is None:
            raise ValueError("response without Content-Length")
        await reader.readexactly(length)
        return status


async def _drive(base_url: str, mix: list[Request], connections: int, seconds: float) -> tuple[_Run, float]:
    url = urlsplit(base_url)
    run = _Run(url.hostname or "127.0.0.1", url.port or 80, expand(mix), time.monotonic() + seconds)
    start = time.perf_counter()
    await asyncio.gather(*(run.connection() for _ in range(connections)))
    return run, time.perf_counter() - start


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        return None
    return uvloop.new_event_loop


def run_asyncio(base_url: str, mix: list[Request], connections: int, seconds: float) -> LoadResult:
    """One bounded load run with the asyncio client (uvloop when it is installed)."""
    with asyncio.Runner(loop_factory=_loop_factory()) as runner:
        run, elapsed = runner.run(_drive(base_url, mix, connections, seconds))
    lat = sorted(run.latencies)
    ms = [v * 1e3 for v in (percentile(lat, 50), percentile(lat, 90), percentile(lat, 99), lat[-1] if lat else 0.0)]
    return LoadResult(
        tool="asyncio",
        connections=connections,
        seconds=elapsed,
        requests=len(lat),
        p50_ms=ms[0],
        p90_ms=ms[1],
        p99_ms=ms[2],
        max_ms=ms[3],
        statuses=dict(run.statuses),
        socket_errors={k: v for k, v in run.errors.items() if v},
    )
