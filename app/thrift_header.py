"""The two wire formats of the gateway's Thrift client: framed binary, and THeader when tracing is on.

THeader (thrift's doc/specs/HeaderFormat.md) wraps the same binary-protocol message in a frame that
also carries key/value "info headers": that is where the trace context travels to the Thrift server,
as W3C `traceparent` and `tracestate` (docs/observability.md). With tracing off nothing is gained by
it, so the client keeps writing plain framed binary then, byte for byte as before.

The THeader frames are written and read by thrift's own THeaderProtocol/THeaderTransport, run over
an in-memory buffer (the socket stays the client's asyncio stream): one implementation of the
format, shared with the server side of the library.
"""

from __future__ import annotations

from typing import Any

from opentelemetry import propagate
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TMessageType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID, THeaderTransport
from thrift.transport.TTransport import TMemoryBuffer

try:  # the C codec; the plain one speaks the same wire format
    from thrift.protocol import fastbinary  # noqa: F401 - imported only to fail where the C codec is missing
    from thrift.protocol.TBinaryProtocol import TBinaryProtocolAccelerated as _Binary
except ImportError:  # pragma: no cover - only without the compiled extension
    _Binary = TBinaryProtocol

# A reply to a THeader request comes back in THeader; a server that does not speak it could only answer
# in framed binary (e.g. an error about the request), which is read rather than misreported.
_REPLY_TYPES = (THeaderClientType.HEADERS, THeaderClientType.FRAMED_BINARY)


def framed_call(method: str, seqid: int, args: Any) -> bytes:
    """A CALL of `method` as one framed binary message (4-byte length, then the message)."""
    out = TMemoryBuffer()
    prot = _Binary(out)
    prot.writeMessageBegin(method, TMessageType.CALL, seqid)
    args.write(prot)
    prot.writeMessageEnd()
    payload: bytes = out.getvalue()
    return len(payload).to_bytes(4, "big", signed=True) + payload


def framed_reply(payload: bytes) -> Any:
    """A protocol reading the reply message of a framed binary frame (`payload`: the frame without its length)."""
    return _Binary(TMemoryBuffer(payload))


def header_call(method: str, seqid: int, args: Any, headers: dict[str, str]) -> bytes:
    """A CALL of `method` as one THeader frame (binary protocol inside) carrying `headers` as info headers."""
    out = TMemoryBuffer()
    trans = THeaderTransport(out, (THeaderClientType.HEADERS,), THeaderSubprotocolID.BINARY)
    for key, value in headers.items():
        trans.set_header(key.encode(), value.encode())
    prot = THeaderProtocol(trans, (THeaderClientType.HEADERS,))
    prot.writeMessageBegin(method, TMessageType.CALL, seqid)
    args.write(prot)
    prot.writeMessageEnd()
    trans.flush()  # frames the message with its headers into `out`
    frame: bytes = out.getvalue()
    return frame


def header_reply(frame: bytes) -> Any:
    """A protocol reading the reply message of a THeader `frame` (with its 4-byte length)."""
    return THeaderProtocol(TMemoryBuffer(frame), _REPLY_TYPES)


def trace_headers() -> dict[str, str]:
    """The current trace context as the propagators write it (`traceparent`, `tracestate`; none without a span)."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier
