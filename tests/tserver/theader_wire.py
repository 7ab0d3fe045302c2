"""THeader on the wire for the runtime tests: thrift's own THeader client, and THeader frames written by thrift or
laid out by hand (for hostile ones)."""

from __future__ import annotations

import contextlib
import struct

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport import TSocket, TTransport
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID, THeaderTransport

from RPC import RPCcelery
from tests.tserver.runtime_harness import frame


@contextlib.contextmanager
def header_client(port: int, compact: bool = False, timeout: float = 5.0):
    """The generated client on thrift's own THeaderTransport over TSocket (binary or compact inside);
    its transport is `client._iprot.trans` (set_header before a call: headers go with the next message)."""
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(int(timeout * 1000))
    protocol_id = THeaderSubprotocolID.COMPACT if compact else THeaderSubprotocolID.BINARY
    trans = THeaderTransport(sock, (THeaderClientType.HEADERS,), protocol_id)
    trans.open()
    try:
        yield RPCcelery.Client(THeaderProtocol(trans, (THeaderClientType.HEADERS,), protocol_id))
    finally:
        trans.close()


def header_frame(
    message: bytes,
    headers: dict[bytes, bytes] | None = None,
    *,
    protocol: int = 0,
    flags: int = 0,
    seqid: int = 1,
    transforms: tuple[int, ...] = (),
) -> bytes:
    """`message` as one THeader frame written by thrift's own THeaderTransport."""
    out = TTransport.TMemoryBuffer()
    trans = THeaderTransport(out, (THeaderClientType.HEADERS,), protocol)
    trans.flags, trans.sequence_id = flags, seqid
    for key, value in (headers or {}).items():
        trans.set_header(key, value)
    for transform in transforms:
        trans.add_transform(transform)
    trans.write(message)
    trans.flush()
    return out.getvalue()


def raw_header_frame(area: bytes, payload: bytes = b"", *, words: int | None = None) -> bytes:
    """A THeader frame laid out by hand: magic, flags 0, sequence id 1, the header area's size in 4-byte
    words (`words`, or the area's own), the area as given, then the payload."""
    size = len(area) // 4 if words is None else words
    return frame(b"\x0f\xff\x00\x00" + struct.pack("!iH", 1, size) + area + payload)
