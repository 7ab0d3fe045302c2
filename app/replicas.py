"""ThriftReplicas: one Thrift client over several Thrift server replicas (TSERVER_ADDRESSES).

With the Redis state backend a Thrift server keeps nothing another needs, so any replica can answer
any call. Calls go round-robin over the replicas in rotation. A replica that refuses a connection
or drops one is taken out of rotation at once and probed in the background (a TCP connect, every
0.25 s doubling to 4 s) until it accepts again; real calls never wait on a replica that is down.

What is retried on the next replica, at once:
* any call whose connection could not be opened: nothing was sent (ComputeUnreachable);
* a read (an idempotent call) whose connection dropped mid-call.
A start (`queueCalcPi`) whose connection dropped after it was sent is not repeated: it may have
been queued, and a repeat could queue the task twice; the caller gets a 503.
The whole call, retries included, stays within THRIFT_TIMEOUT.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import time
from typing import Any

from app.errors import ComputeDropped, ComputeTimeout, ComputeUnavailable, ComputeUnreachable
from app.thrift_client import ThriftPool

log = logging.getLogger(__name__)

_PROBE_FIRST, _PROBE_MAX = 0.25, 4.0


class _Replica:
    """One address, its pool, and whether it is in rotation."""

    def __init__(self, pool: ThriftPool) -> None:
        self.pool = pool
        self.down_since: float | None = None
        self.probe: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        return f"{self.pool.host}:{self.pool.port}"


class ThriftReplicas:
    """Calls RPCcelery methods on whichever replica is up (same `call` as ThriftPool)."""

    def __init__(
        self,
        addresses: list[tuple[str, int]],
        *,
        size: int,
        timeout: float,
        connect_timeout: float,
        header: bool = False,
    ) -> None:
        if not addresses:
            raise ValueError("at least one Thrift server address is needed")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._replicas = [
            _Replica(ThriftPool(host, port, size=size, timeout=timeout, connect_timeout=connect_timeout, header=header))
            for host, port in addresses
        ]
        self._next = 0

    @property
    def in_rotation(self) -> list[str]:
        """The addresses calls go to now."""
        return [r.address for r in self._replicas if r.down_since is None]

    @property
    def pools(self) -> list[ThriftPool]:
        """The pool of each replica (read by the metrics of connections in use)."""
        return [r.pool for r in self._replicas]

    async def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """Call `method` on a replica; IDL exceptions pass through typed, transport trouble is ComputeUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._call(method, args, idempotent)
        except TimeoutError:
            raise ComputeTimeout(f"the compute service did not answer within {self.timeout:g} s") from None

    async def close(self) -> None:
        """Stop the probes and close every pooled connection."""
        for replica in self._replicas:
            if replica.probe is not None:
                replica.probe.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await replica.probe
            await replica.pool.close()

    async def _call(self, method: str, args: tuple[Any, ...], idempotent: bool) -> Any:
        last: ComputeUnavailable | None = None
        for replica in self._order():
            try:
                return await replica.pool.call(method, *args, idempotent=idempotent)
            except ComputeUnreachable as exc:  # nothing was sent: any call may go elsewhere
                self._take_out(replica, exc)
                last = exc
            except ComputeDropped as exc:
                self._take_out(replica, exc)
                if not idempotent:
                    raise  # a start that may have been queued
                last = exc
        assert last is not None
        raise last

    def _order(self) -> list[_Replica]:
        """The replicas in rotation, starting with the next in turn; then those out of it (a last resort)."""
        count = len(self._replicas)
        start, self._next = self._next, (self._next + 1) % count
        turn = [self._replicas[(start + i) % count] for i in range(count)]
        return [r for r in turn if r.down_since is None] + [r for r in turn if r.down_since is not None]

    def _take_out(self, replica: _Replica, exc: Exception) -> None:
        if replica.down_since is not None or len(self._replicas) == 1:
            return
        replica.down_since = time.monotonic()
        log.warning("Thrift server %s out of rotation: %s", replica.address, exc)
        # In a context of its own: the probe outlives the call that found the replica down, and its log
        # lines must not name that call's task or trace.
        replica.probe = asyncio.get_running_loop().create_task(
            self._probe(replica), name=f"probe {replica.address}", context=contextvars.Context()
        )

    async def _probe(self, replica: _Replica) -> None:
        delay = _PROBE_FIRST
        while True:
            await asyncio.sleep(delay)
            try:
                async with asyncio.timeout(self.connect_timeout):
                    _, writer = await asyncio.open_connection(replica.pool.host, replica.pool.port)
                writer.close()
                break
            except (OSError, TimeoutError):
                delay = min(2 * delay, _PROBE_MAX)
        log.info(
            "Thrift server %s back in rotation after %.1f s",
            replica.address,
            time.monotonic() - (replica.down_since or time.monotonic()),
        )
        replica.down_since, replica.probe = None, None
