"""ThriftServer: serves a generated Thrift Processor over TCP with asyncio, and closes gracefully.

Why not the stock servers: TThreadedServer spends one thread per connection and has no timeouts;
TThreadPoolServer lets idle connections hold pool threads. Here the event loop owns every socket;
an idle connection costs a file descriptor and a few hundred bytes. Complete messages are run
where their handler method says (dispatch.py): coroutines on the loop, plain methods in a bounded
thread pool.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.protocol.TCompactProtocol import TCompactProtocolAccelerated

from tserver.runtime.connection import Connection
from tserver.runtime.dispatch import Dispatcher
from tserver.runtime.limits import ServerLimits
from tserver.runtime.observer import CallObserver
from tserver.runtime.request import BINARY, COMPACT, Request

try:  # the C extension; without it TBinaryProtocolAccelerated would silently be the pure one anyway
    from thrift.protocol import fastbinary  # noqa: F401 - imported only to learn whether it is built

    _PROTOCOL: type[TBinaryProtocol] = TBinaryProtocolAccelerated
except ImportError:  # pragma: no cover - depends on the thrift build
    _PROTOCOL = TBinaryProtocol

log = logging.getLogger(__name__)


class ThriftServer:
    """Serves a Thrift processor (``TProcessor.process(iprot, oprot)``) over TCP with asyncio."""

    def __init__(
        self,
        processor: Any,
        host: str,
        port: int,
        limits: ServerLimits | None = None,
        *,
        observer: CallObserver | None = None,
    ) -> None:
        self.processor = processor
        self.host = host
        self.port = port
        self.limits = limits or ServerLimits()
        self.observer = observer
        self.dispatcher = Dispatcher(processor, {BINARY: self._protocol, COMPACT: self._compact}, observer)
        self.closing = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.base_events.Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._conns: set[Connection] = set()
        self._inflight: set[asyncio.Future[bytes]] = set()
        self._closed: asyncio.Event | None = None
        self._no_conns: asyncio.Event | None = None
        self._last_reject_log = 0.0
        self._rejected = 0

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the server runs on (once started)."""
        assert self._loop is not None, "the server has not been started"
        return self._loop

    @property
    def connection_count(self) -> int:
        """Open client connections (accepted and not yet closed)."""
        return len(self._conns)

    async def start(self) -> None:
        """Bind and listen; ``self.port`` becomes the bound port (useful with port 0)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.get_running_loop()
        self._closed = asyncio.Event()
        self._no_conns = asyncio.Event()
        self._no_conns.set()
        self._pool = ThreadPoolExecutor(max_workers=self.limits.workers, thread_name_prefix="tserver-call")
        backlog = min(self.limits.max_connections, 4096)
        sock = _bind_numeric(self.host, self.port)
        try:
            if sock is not None:
                self._server = await self._loop.create_server(lambda: Connection(self), sock=sock, backlog=backlog)
            else:  # a host name: let asyncio resolve it
                self._server = await self._loop.create_server(
                    lambda: Connection(self), self.host, self.port, backlog=backlog, reuse_address=True
                )
        except BaseException:
            if sock is not None:
                sock.close()
            self._pool.shutdown(wait=False)
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Thrift server listening on %s:%d (%d workers)", self.host, self.port, self.limits.workers)

    async def serve_forever(self) -> None:
        """Serve until :meth:`close` has finished."""
        if self._server is None:
            await self.start()
        assert self._closed is not None
        await self._closed.wait()

    async def close(self) -> None:
        """Stop accepting, close idle connections, let in-flight calls answer, shut the pool."""
        if self._server is None:  # never started
            return
        assert self._closed is not None and self._no_conns is not None and self._pool is not None
        if self.closing:
            await self._closed.wait()
            return
        self.closing = True
        self._server.close()
        for conn in list(self._conns):
            conn.shutdown()
        if self._inflight:
            await asyncio.wait(list(self._inflight))
        try:  # replies of the last calls are flushed by transport.close(); a client that never
            await asyncio.wait_for(self._no_conns.wait(), 5.0)  # reads them gets cut off
        except TimeoutError:
            for conn in list(self._conns):
                conn.abort()
            await asyncio.sleep(0)
        await self._server.wait_closed()
        self._pool.shutdown(wait=True)  # every call has finished: the threads only need to exit
        log.info("Thrift server on port %d closed", self.port)
        self._closed.set()

    # -- used by connections ----------------------------------------------------------------------

    def admit(self, conn: Connection, peer: Any) -> bool:
        """Register a new connection; False (it must close) when max_connections are open."""
        if len(self._conns) >= self.limits.max_connections:
            self._note_rejected(peer)
            return False
        self._conns.add(conn)
        assert self._no_conns is not None
        self._no_conns.clear()
        return True

    def release(self, conn: Connection) -> None:
        """Forget a closed connection."""
        self._conns.discard(conn)
        if not self._conns:
            assert self._no_conns is not None
            self._no_conns.set()

    def call(self, request: Request) -> asyncio.Future[bytes]:
        """Run one request; the future's result is the reply bytes (tracked until done, for close())."""
        assert self._pool is not None
        fut = self.loop.create_task(self.dispatcher.dispatch(request, self._pool))
        self._inflight.add(fut)
        fut.add_done_callback(self._inflight.discard)
        return fut

    def rejected(self) -> None:
        """A connection is closed for bytes that cannot be a request."""
        if self.observer is not None:
            self.observer.rejected()

    def _note_rejected(self, peer: Any) -> None:
        self._rejected += 1
        now = time.monotonic()
        if now - self._last_reject_log >= 10.0:
            self._last_reject_log = now
            log.warning(
                "max_connections=%d reached: closing new connection from %s (%d rejected so far)",
                self.limits.max_connections,
                peer,
                self._rejected,
            )

    def _protocol(self, trans: Any) -> TBinaryProtocol:
        return _PROTOCOL(
            trans,
            string_length_limit=self.limits.string_length_limit,
            container_length_limit=self.limits.container_length_limit,
        )

    def _compact(self, trans: Any) -> TCompactProtocolAccelerated:
        # Only inside THeader frames (a plain compact client is refused by its first byte, 0x82).
        return TCompactProtocolAccelerated(
            trans,
            string_length_limit=self.limits.string_length_limit,
            container_length_limit=self.limits.container_length_limit,
        )


def _bind_numeric(host: str, port: int) -> socket.socket | None:
    """A bound, non-blocking listening socket for an IP literal (no resolver thread), else None."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return None
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock
