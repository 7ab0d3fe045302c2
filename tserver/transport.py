"""An asyncio TCP server for a Thrift processor: framed and unframed TBinaryProtocol on one port.

Why not the stock servers: TThreadedServer spends one thread per connection and has no timeouts;
TThreadPoolServer lets idle connections hold pool threads. Here the event loop owns every socket,
an idle connection costs a file descriptor and a few hundred bytes, and only complete messages reach
the bounded thread pool that runs ``processor.process`` (handlers block on disk and on the broker).
Handler methods defined ``async def`` are awaited on the loop instead (see async_processor.py), and
a few quick ones (``inline_methods``) run on the loop directly.

Per connection the first byte decides the framing:

* ``0x80`` -- a strict binary message (version word ``0x8001xxxx``) on an unframed transport, as
  stock clients built on ``TBufferedTransport(TSocket)`` send it. The end of the message is found by
  :class:`MessageScanner`, an incremental scanner of the binary protocol that resumes where it
  stopped, so a client sending one byte at a time costs O(n), not O(n^2).
* ``0x00`` -- a ``TFramedTransport`` frame: a 4-byte big-endian length, then the message.
* anything else -- the connection is closed (old-style non-strict messages are not accepted).

Replies go back in the framing of the request. Calls of one connection are run one at a time and
answered in order; while a call runs, at most one further complete message is buffered and reading
is paused, so a pipelining client cannot make the server buffer without bound.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import logging
import os
import signal
import socket
import struct
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable

from thrift.protocol.TBinaryProtocol import TBinaryProtocol, TBinaryProtocolAccelerated
from thrift.protocol.TProtocol import TProtocolException
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

from tserver.async_processor import AsyncCalls
from tserver.scanner import MessageScanner, ScanError

_unpack_i32 = struct.Struct("!i").unpack_from
_pack_i32 = struct.Struct("!i").pack

try:  # the C extension; without it TBinaryProtocolAccelerated would silently be the pure one anyway
    from thrift.protocol import fastbinary as _fastbinary  # noqa: F401

    _PROTOCOL: type[TBinaryProtocol] = TBinaryProtocolAccelerated
except ImportError:  # pragma: no cover - depends on the thrift build
    _PROTOCOL = TBinaryProtocol

logger = logging.getLogger(__name__)

__all__ = ["ServerLimits", "ThriftServer", "run"]


@dataclass(frozen=True)
class ServerLimits:
    """What one server lets its clients use."""

    workers: int = 8  # bounded thread pool that runs processor calls (handlers block on disk/broker)
    idle_timeout: float = 60.0  # close a connection with no complete message for this long
    message_timeout: float = 10.0  # a started message must be complete within this (slowloris)
    max_message_bytes: int = 1 << 20  # larger frame claim / unframed message -> close connection, allocate nothing
    string_length_limit: int = 1 << 20
    container_length_limit: int = 100_000
    max_connections: int = 2_000  # beyond: accept and close at once
    # Methods cheap and non-blocking enough to run on the event loop itself (e.g. one small file
    # read); everything else goes to the pool.
    inline_methods: frozenset[str] = frozenset()
    # Methods that may wait long on something outside (the broker): they run in a pool of their
    # own (slow_workers threads), so that the other calls never queue behind them.
    slow_methods: frozenset[str] = frozenset()
    slow_workers: int = 8

    def __post_init__(self) -> None:
        if self.workers < 1 or self.slow_workers < 1:
            raise ValueError("workers and slow_workers must be >= 1")
        if self.idle_timeout <= 0 or self.message_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_message_bytes < 16:
            raise ValueError("max_message_bytes must be >= 16")
        if self.string_length_limit < 0 or self.container_length_limit < 0:
            raise ValueError("length limits must be >= 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------

_MODE_UNKNOWN, _MODE_UNFRAMED, _MODE_FRAMED = 0, 1, 2
# Errors that mean the request bytes could not be decoded (fastbinary raises OverflowError on limits).
_DECODE_ERRORS = (TProtocolException, TTransportException, EOFError, OverflowError, UnicodeDecodeError,
                  struct.error, ValueError)


class _Connection(asyncio.Protocol):
    """One client connection: sniffs the framing, cuts messages, runs them one at a time."""

    def __init__(self, server: ThriftServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = server._loop
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._buf = bytearray()
        self._mode = _MODE_UNKNOWN
        self._scanner: MessageScanner | None = None
        self._frame_len = -1
        self._pending: collections.deque[bytes] = collections.deque()
        self._busy = False
        self._reading_paused = False
        self._writing_paused = False
        self._closed = False
        self._registered = False
        self._half_closed = False
        # Timeouts: one lazily re-armed timer per connection (not one per message).
        self._last_activity = 0.0
        self._msg_deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # (uvloop's is no asyncio.Transport subclass)
        self._peer = transport.get_extra_info("peername")
        server = self._server
        if server._closing:
            self._closed = True
            transport.abort()
            return
        if len(server._conns) >= self._limits.max_connections:
            self._closed = True
            server._note_rejected(self._peer)
            transport.close()
            return
        server._register(self)
        self._registered = True
        self._last_activity = self._loop.time()
        self._arm(self._last_activity + self._limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pending.clear()
        self._buf = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._registered:
            self._registered = False
            self._server._unregister(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buf += data
        self._parse()

    def eof_received(self) -> bool | None:
        # The client half-closed. With a call running, keep the write side open so that its reply
        # (and those of complete messages already buffered) still go out; _call_done closes after.
        # A partial message can never complete and is dropped.
        if self._busy:
            self._half_closed = True
            self._buf = bytearray()
            self._msg_deadline = None
            return True
        return None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._closed and not self._busy:
            self._next()

    # -- message cutting --------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        limits = self._limits
        while not self._closed and not self._pending:
            if not buf:
                self._msg_deadline = None
                return
            if self._mode == _MODE_UNKNOWN:
                first = buf[0]
                if first == 0x80:
                    self._mode = _MODE_UNFRAMED
                    self._scanner = MessageScanner(limits.max_message_bytes, limits.string_length_limit,
                                                   limits.container_length_limit)
                elif first == 0x00:
                    self._mode = _MODE_FRAMED
                else:
                    self._abandon(f"first byte 0x{first:02x} is neither a strict binary message nor a frame")
                    return
            if self._mode == _MODE_FRAMED:
                if self._frame_len < 0:
                    if len(buf) < 4:
                        self._message_started()
                        return
                    claimed = _unpack_i32(buf, 0)[0]
                    if claimed <= 0 or claimed > limits.max_message_bytes:
                        self._abandon(f"frame length {claimed} outside 1..{limits.max_message_bytes}")
                        return
                    self._frame_len = claimed
                end = 4 + self._frame_len
                if len(buf) < end:
                    self._message_started()
                    return
                message = bytes(buf[4:end])
                self._frame_len = -1
            else:
                scanner = self._scanner
                assert scanner is not None
                try:
                    end = scanner.feed(buf)
                except ScanError as exc:
                    self._abandon(str(exc))
                    return
                if end is None:
                    self._message_started()
                    return
                message = bytes(buf[:end])
                scanner.reset()
            del buf[:end]
            self._msg_deadline = None
            self._last_activity = self._loop.time()
            if self._busy or self._writing_paused:
                self._pending.append(message)
                self._pause_reading()
            else:
                self._dispatch(message)

    def _message_started(self) -> None:
        if self._msg_deadline is None:
            self._msg_deadline = self._loop.time() + self._limits.message_timeout
            self._arm(self._msg_deadline)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()
        # the client is not to blame for the time its next message waits behind ours
        self._msg_deadline = None

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = False
            self._transport.resume_reading()

    # -- calls ------------------------------------------------------------------------------------

    def _dispatch(self, message: bytes) -> None:
        self._busy = True
        server = self._server
        method = _method_name(message)
        if method in self._limits.inline_methods:
            # Quick calls run on the loop: a hop to a pool thread and back costs more than they do.
            fut: asyncio.Future[bytes] = self._loop.create_future()
            try:
                fut.set_result(server._process(message))
            except Exception as exc:  # noqa: BLE001 - reported by _call_done like a pool failure
                fut.set_exception(exc)
            self._loop.call_soon(self._call_done, fut)  # not a direct call: no recursion per message
            return
        if method in server._async.methods:
            # A coroutine handler method: awaited on the loop, holding no thread while it waits.
            fut = self._loop.create_task(server._process_async(message))
            server._inflight.add(fut)
            fut.add_done_callback(self._call_done)
            return
        pool = server._slow_pool if method in self._limits.slow_methods else server._pool
        fut = self._loop.run_in_executor(pool, server._process, message)
        server._inflight.add(fut)
        fut.add_done_callback(self._call_done)

    def _call_done(self, fut: asyncio.Future[bytes]) -> None:
        server = self._server
        server._inflight.discard(fut)
        self._busy = False
        if fut.cancelled():
            self._close()
            return
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, _DECODE_ERRORS):
                logger.warning("closing connection from %s: bad request (or unwritable reply): %s: %s",
                               self._peer, type(exc).__name__, exc)
            else:
                logger.error("closing connection from %s: processor failed", self._peer, exc_info=exc)
            self._close()
            return
        if self._closed:
            return
        reply = fut.result()
        if reply:  # a ONEWAY call has no reply
            assert self._transport is not None
            if self._mode == _MODE_FRAMED:
                self._transport.write(_pack_i32(len(reply)) + reply)
            else:
                self._transport.write(reply)
        self._last_activity = self._loop.time()
        if server._closing or (self._half_closed and not self._pending):
            self._close()
            return
        self._arm(self._last_activity + self._limits.idle_timeout)
        self._next()

    def _next(self) -> None:
        """Not busy any more: run a buffered message, or read on."""
        if self._writing_paused:
            return  # resume_writing calls us again
        if self._pending:
            self._dispatch(self._pending.popleft())
        if not self._half_closed:
            self._resume_reading()
            self._parse()

    # -- timeouts and closing ---------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        if self._closed:
            return
        if self._timer is None or deadline < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        deadlines = []
        if self._msg_deadline is not None:
            if now >= self._msg_deadline:
                logger.info("closing connection from %s: message not complete within %.1f s",
                            self._peer, self._limits.message_timeout)
                self._close()
                return
            deadlines.append(self._msg_deadline)
        if not self._busy:  # a running call is not idleness
            idle_deadline = self._last_activity + self._limits.idle_timeout
            if now >= idle_deadline:
                logger.debug("closing connection from %s: idle for %.1f s", self._peer, self._limits.idle_timeout)
                self._close()
                return
            deadlines.append(idle_deadline)
        if deadlines:
            self._arm(min(deadlines))

    def _abandon(self, reason: str) -> None:
        logger.warning("closing connection from %s: %s", self._peer, reason)
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._closed = True
        self._pending.clear()
        self._buf = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _shutdown(self) -> None:
        """The server is closing: close now unless a call runs (then after its reply)."""
        if not self._busy:
            self._close()

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class ThriftServer:
    """Serves a Thrift processor (``TProcessor.process(iprot, oprot)``) over TCP with asyncio."""

    def __init__(self, processor: Any, host: str, port: int, limits: ServerLimits = ServerLimits()) -> None:
        self.processor = processor
        self._async = AsyncCalls(processor)
        self.host = host
        self.port = port
        self.limits = limits
        self._loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # set by start()
        self._server: asyncio.base_events.Server | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slow_pool: ThreadPoolExecutor | None = None
        self._conns: set[_Connection] = set()
        self._inflight: set[asyncio.Future[bytes]] = set()
        self._closing = False
        self._closed: asyncio.Event | None = None
        self._no_conns: asyncio.Event | None = None
        self._last_reject_log = 0.0
        self._rejected = 0

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
        self._slow_pool = ThreadPoolExecutor(max_workers=self.limits.slow_workers, thread_name_prefix="tserver-slow")
        backlog = min(self.limits.max_connections, 4096)
        sock = _bind_numeric(self.host, self.port)
        try:
            if sock is not None:
                self._server = await self._loop.create_server(lambda: _Connection(self), sock=sock, backlog=backlog)
            else:  # a host name: let asyncio resolve it
                self._server = await self._loop.create_server(lambda: _Connection(self), self.host, self.port,
                                                              backlog=backlog, reuse_address=True)
        except BaseException:
            if sock is not None:
                sock.close()
            self._pool.shutdown(wait=False)
            self._slow_pool.shutdown(wait=False)
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("Thrift server listening on %s:%d (%d workers)", self.host, self.port, self.limits.workers)

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
        assert self._closed is not None and self._no_conns is not None
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        assert self._server is not None and self._pool is not None
        self._server.close()
        for conn in list(self._conns):
            conn._shutdown()
        if self._inflight:
            await asyncio.wait(list(self._inflight))
        try:  # replies of the last calls are flushed by transport.close(); a client that never
            await asyncio.wait_for(self._no_conns.wait(), 5.0)  # reads them gets cut off
        except asyncio.TimeoutError:
            for conn in list(self._conns):
                conn._abort()
            await asyncio.sleep(0)
        await self._server.wait_closed()
        self._pool.shutdown(wait=True)  # every call has finished: the threads only need to exit
        assert self._slow_pool is not None
        self._slow_pool.shutdown(wait=True)
        logger.info("Thrift server on port %d closed", self.port)
        self._closed.set()

    # -- used by connections ----------------------------------------------------------------------

    def _register(self, conn: _Connection) -> None:
        self._conns.add(conn)
        assert self._no_conns is not None
        self._no_conns.clear()

    def _unregister(self, conn: _Connection) -> None:
        self._conns.discard(conn)
        if not self._conns:
            assert self._no_conns is not None
            self._no_conns.set()

    def _note_rejected(self, peer: Any) -> None:
        self._rejected += 1
        now = time.monotonic()
        if now - self._last_reject_log >= 10.0:
            self._last_reject_log = now
            logger.warning("max_connections=%d reached: closing new connection from %s (%d rejected so far)",
                           self.limits.max_connections, peer, self._rejected)

    async def _process_async(self, message: bytes) -> bytes:
        """Runs on the loop: one call of a coroutine handler method."""
        return await self._async.process(message, self._protocol)

    def _protocol(self, trans: Any) -> TBinaryProtocol:
        return _PROTOCOL(trans, string_length_limit=self.limits.string_length_limit,
                         container_length_limit=self.limits.container_length_limit)

    def _process(self, message: bytes) -> bytes:
        """Runs in a pool thread: decode one message, call the processor, return the reply bytes."""
        limits = self.limits
        iprot = _PROTOCOL(TMemoryBuffer(message), string_length_limit=limits.string_length_limit,
                          container_length_limit=limits.container_length_limit)
        otrans = TMemoryBuffer()
        self.processor.process(iprot, _PROTOCOL(otrans))
        return otrans.getvalue()


def _method_name(message: bytes) -> str:
    """The method name of a strict binary message (version word, name length, name), or ''."""
    if len(message) < 8:
        return ""
    length = _unpack_i32(message, 4)[0]
    if not 0 < length <= 64 or len(message) < 8 + length:
        return ""
    return message[8: 8 + length].decode("ascii", "replace")


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


def _write_port_file(path: str, port: int) -> None:
    """Write the port atomically: a reader sees no file or the whole number."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def run(processor: Any, host: str, port: int, limits: ServerLimits = ServerLimits(), *,
        port_file: str | None = None, ready: Callable[[int], Any] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then close gracefully (blocking; for ``__main__``).

    Uses uvloop when it is importable. Once listening, writes the bound port to ``port_file``
    (atomically) and calls ``ready(port)``.
    """
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(processor, host, port, limits, port_file, ready))


async def _serve(processor: Any, host: str, port: int, limits: ServerLimits, port_file: str | None,
                 ready: Callable[[int], Any] | None) -> None:
    server = ThriftServer(processor, host, port, limits)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        await server.start()
        if port_file:
            _write_port_file(port_file, server.port)
        if ready is not None:
            ready(server.port)
        await stop.wait()
        logger.info("signal received: closing the Thrift server")
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
        await server.close()
