"""An asyncio Thrift client with a pool of persistent framed connections.

Why not the stock client: it blocks, and a blocking call inside an `async def` route freezes the
whole gateway (its event loop runs nothing else until the call returns), while a new TCP
connection per request caps throughput and fills the host with TIME_WAIT sockets. Here each call
borrows an open connection, writes one framed TBinaryProtocol message, awaits the framed reply with
a deadline, and returns the connection. Requests and replies are (de)serialised with the generated
`<method>_args` / `<method>_result` structs.

With `header=True` (tracing on) each message is a THeader frame instead, carrying the current trace
context to the Thrift server (app/thrift_header.py); the reply is read in the same format.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any, Protocol

from opentelemetry import trace
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TTransportException

from app import thrift_header
from app.errors import ComputeDropped, ComputeFailed, ComputeTimeout, ComputeUnreachable
from RPC import RPCcelery
from RPC.ttypes import BadArgument, BadDecimal, BadTask, TaskFinished, Unavailable

log = logging.getLogger(__name__)

#: The IDL's declared exceptions: normal replies, passed to the caller typed.
IDL_ERRORS = (BadArgument, BadDecimal, BadTask, TaskFinished, Unavailable)
_FRAME = struct.Struct("!i")
_MAX_REPLY_BYTES = 64 * 1024 * 1024
# Drop pooled connections idle this long: the server closes idle ones after TSERVER_IDLE_TIMEOUT
# (60 s by default), and a connection it closed must never be reused for a call that is not safe
# to repeat.
_MAX_IDLE_SECONDS = 20.0


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.seqid = 0
        self.last_used = time.monotonic()

    @property
    def usable(self) -> bool:
        fresh = time.monotonic() - self.last_used < _MAX_IDLE_SECONDS
        return fresh and not self.reader.at_eof() and not self.writer.is_closing()

    async def call(self, method: str, args: tuple[Any, ...], headers: dict[str, str] | None) -> Any:
        """One call; `headers` None: framed binary, else THeader carrying them."""
        self.seqid += 1
        call_args = getattr(RPCcelery, f"{method}_args")(*args)
        if headers is None:
            self.writer.write(thrift_header.framed_call(method, self.seqid, call_args))
        else:
            self.writer.write(thrift_header.header_call(method, self.seqid, call_args, headers))
        await self.writer.drain()

        head = await self.reader.readexactly(_FRAME.size)
        (size,) = _FRAME.unpack(head)
        if not 0 < size <= _MAX_REPLY_BYTES:
            raise ConnectionError(f"implausible reply frame of {size} bytes")
        body = await self.reader.readexactly(size)
        iprot = thrift_header.framed_reply(body) if headers is None else thrift_header.header_reply(head + body)
        _name, mtype, seqid = iprot.readMessageBegin()
        if mtype == TMessageType.EXCEPTION:
            exc = TApplicationException()
            exc.read(iprot)
            raise exc
        if seqid != self.seqid:
            raise ConnectionError("reply out of sequence")
        result = getattr(RPCcelery, f"{method}_result")()
        result.read(iprot)
        self.last_used = time.monotonic()
        return _unwrap(method, result)

    def close(self) -> None:
        self.writer.close()


def _unwrap(method: str, result: Any) -> Any:
    # Field 0 of a result struct is the return value; the others are the declared exceptions.
    for spec in result.thrift_spec[1:]:
        if spec is not None and getattr(result, spec[2]) is not None:
            raise getattr(result, spec[2])
    if result.thrift_spec[0] is None:  # a void method
        return None
    if result.success is None:
        raise TApplicationException(TApplicationException.MISSING_RESULT, f"{method} returned no result")
    return result.success


class ThriftCaller(Protocol):
    """What routes and readers need of a Thrift client: ThriftPool (one server) or ThriftReplicas (several)."""

    async def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """Call `method`; IDL exceptions pass through typed, transport trouble is ComputeUnavailable."""
        ...


class ThriftPool:
    """Calls RPCcelery methods over a bounded pool of persistent connections."""

    def __init__(
        self, host: str, port: int, *, size: int, timeout: float, connect_timeout: float, header: bool = False
    ) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        #: THeader with the trace context in each call (tracing on), else plain framed binary.
        self.header = header
        #: Connections lent to calls now (the metric thrift_client_connections_in_use).
        self.in_use = 0
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    @property
    def idle(self) -> int:
        """Open connections waiting in the pool."""
        return len(self._idle)

    async def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """Call `method`; IDL exceptions pass through typed, transport trouble is ComputeUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    self.in_use += 1
                    try:
                        return await self._call(method, args, idempotent)
                    finally:
                        self.in_use -= 1
        except TimeoutError:
            raise ComputeTimeout(f"the compute service did not answer within {self.timeout:g} s") from None

    async def _call(self, method: str, args: tuple[Any, ...], idempotent: bool) -> Any:
        headers = None
        if self.header:
            headers = thrift_header.trace_headers()
            # The client span is current here (app/thrift_observed.py); the replica that answers names its peer.
            trace.get_current_span().set_attributes(
                {
                    "net.peer.name": self.host,
                    "net.peer.port": self.port,
                    "server.address": self.host,
                    "server.port": self.port,
                }
            )
        conn, reused = self._take_idle(), True
        if conn is None:
            conn, reused = await self._connect(), False
        try:
            result = await conn.call(method, args, headers)
        except IDL_ERRORS:
            self._idle.append(conn)  # a declared exception is a normal reply: the connection is fine
            raise
        except TApplicationException as exc:
            self._idle.append(conn)
            raise ComputeFailed(f"the compute service failed: {exc.message}") from None
        except (OSError, EOFError, asyncio.IncompleteReadError, TTransportException, TProtocolException) as exc:
            conn.close()
            if reused and idempotent:
                # The pooled connection may have died while idle (server restarted): one fresh try.
                log.info("retrying %s on a new connection after %r", method, exc)
                return await self._call(method, args, idempotent=False)
            raise ComputeDropped(f"the compute service dropped the connection ({exc.__class__.__name__})") from None
        except BaseException:
            conn.close()  # cancelled mid-call: its reply must not arrive on a reused connection
            raise
        self._idle.append(conn)
        return result

    def _take_idle(self) -> _Connection | None:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                return conn
            conn.close()
        return None

    async def _connect(self) -> _Connection:
        try:
            async with asyncio.timeout(self.connect_timeout):
                reader, writer = await asyncio.open_connection(self.host, self.port)
        except (OSError, TimeoutError) as exc:
            raise ComputeUnreachable(
                f"the compute service at {self.host}:{self.port} is unreachable ({exc.__class__.__name__})"
            ) from None
        return _Connection(reader, writer)

    async def close(self) -> None:
        """Close every pooled connection."""
        while self._idle:
            self._idle.pop().close()
