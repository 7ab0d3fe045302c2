"""An asyncio Thrift client with a pool of persistent framed connections.

Why not the stock client: it blocks, and a blocking call inside an `async def` route freezes the
whole gateway (its event loop runs nothing else until the call returns), while a new TCP
connection per request caps throughput and fills the host with TIME_WAIT sockets. Here each call
borrows an open connection, writes one framed TBinaryProtocol message, awaits the framed reply with
a deadline, and returns the connection. Requests and replies are (de)serialised with the generated
`<method>_args` / `<method>_result` structs.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
from typing import Any, Protocol

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

from app.errors import ComputeDropped, ComputeFailed, ComputeUnavailable, ComputeUnreachable
from RPC import RPCcelery
from RPC.ttypes import BadArgument, BadDecimal, BadTask, TaskFinished, Unavailable

try:  # the C codec; the plain one speaks the same wire format
    from thrift.protocol import fastbinary  # noqa: F401 - imported only to fail where the C codec is missing
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated as _Protocol
except ImportError:  # pragma: no cover - only without the compiled extension
    _Protocol = TBinaryProtocol

log = logging.getLogger(__name__)

_IDL_ERRORS = (BadArgument, BadDecimal, BadTask, TaskFinished, Unavailable)
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

    async def call(self, method: str, args: tuple[Any, ...]) -> Any:
        self.seqid += 1
        out = TMemoryBuffer()
        oprot = _Protocol(out)
        oprot.writeMessageBegin(method, TMessageType.CALL, self.seqid)
        getattr(RPCcelery, f"{method}_args")(*args).write(oprot)
        oprot.writeMessageEnd()
        payload = out.getvalue()
        self.writer.write(_FRAME.pack(len(payload)) + payload)
        await self.writer.drain()

        (size,) = _FRAME.unpack(await self.reader.readexactly(_FRAME.size))
        if not 0 < size <= _MAX_REPLY_BYTES:
            raise ConnectionError(f"implausible reply frame of {size} bytes")
        iprot = _Protocol(TMemoryBuffer(await self.reader.readexactly(size)))
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

    def __init__(self, host: str, port: int, *, size: int, timeout: float, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: list[_Connection] = []
        self._slots = asyncio.Semaphore(size)

    async def call(self, method: str, *args: Any, idempotent: bool = True) -> Any:
        """Call `method`; IDL exceptions pass through typed, transport trouble is ComputeUnavailable."""
        try:
            async with asyncio.timeout(self.timeout):
                async with self._slots:
                    return await self._call(method, args, idempotent)
        except TimeoutError:
            raise ComputeUnavailable(
                f"the compute service did not answer within {self.timeout:g} s"
            ) from None

    async def _call(self, method: str, args: tuple[Any, ...], idempotent: bool) -> Any:
        conn, reused = self._take_idle(), True
        if conn is None:
            conn, reused = await self._connect(), False
        try:
            result = await conn.call(method, args)
        except _IDL_ERRORS:
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
