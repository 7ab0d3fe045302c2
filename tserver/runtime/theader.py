"""THeader frames (thrift's doc/specs/HeaderFormat.md): a frame whose payload starts with the magic 0x0FFF
carries flags, a sequence id, transforms (zlib) and key/value info headers before one binary or compact
protocol message. The gateway sends the trace context there (docs/observability.md).

Read and written by thrift's own THeaderTransport over an in-memory buffer, so the format has one
implementation, the library's. Before it reads a frame, `_check_headers` walks the header area (a few
microseconds): thrift's reader trusts the counts it finds and reads on past the header area into the
rest of the frame, ~1.3 us a byte of pure Python (a 1 MiB frame of empty key/value pairs held the loop
for 1.3 s). Checked first, every field lies inside a header area of at most `max_header_bytes`, so
thrift's read of it is as short. Nothing is allocated from a claim: lengths are checked against the
bytes present, zlib inflates to at most max_message_bytes, and the frame's own length was checked
against max_message_bytes before a byte of it was kept. Anything that cannot be decoded (an unknown
transform or sub-protocol, a truncated field, a varint over 5 bytes) is a HeaderError, and the
connection is closed (thrift's server would answer an unknown transform with an exception and read on;
a client that sends one is broken or hostile).

A reply goes back as thrift's server answers, the request's THeaderProtocol writing it: the same
sub-protocol, flags and sequence id, no transform and no info headers (the request's are not echoed).
"""

from __future__ import annotations

import struct
import zlib

from thrift.protocol.TProtocol import TProtocolException
from thrift.Thrift import TApplicationException
from thrift.transport.THeaderTransport import (
    KNOWN_READ_TRANSFORM_IDS,
    THeaderClientType,
    THeaderTransport,
    TInfoHeaderType,
)
from thrift.transport.TTransport import HARD_MAX_FRAME_SIZE, TMemoryBuffer, TTransportException

from tserver.runtime.request import BINARY, COMPACT, HeaderFrame, Request

#: The first two payload bytes of a THeader frame.
MAGIC = b"\x0f\xff"
_HEADERS_ONLY = (THeaderClientType.HEADERS,)
# 4 length, 2 magic, 2 flags, 4 sequence id, 2 header size (in 4-byte words): then the header area.
_FIXED = 14
# zlib twice is already odd; more only multiplies the work of one frame.
_MAX_TRANSFORMS = 4
# What thrift's reader may still raise (TApplicationException: an unknown transform).
_UNDECODABLE = (
    TTransportException,
    TProtocolException,
    TApplicationException,
    EOFError,
    struct.error,
    zlib.error,
    OverflowError,
    ValueError,
)


class HeaderError(Exception):
    """The frame is not an acceptable THeader request."""


def decode(frame: bytes, max_bytes: int, max_header_bytes: int) -> Request:
    """The request in `frame` (a whole THeader frame, its 4-byte length included)."""
    _check_headers(frame, max_header_bytes)
    trans = THeaderTransport(TMemoryBuffer(frame), _HEADERS_ONLY)
    trans.set_max_frame_size(max_bytes)
    trans.set_max_decompressed_size(max_bytes)
    try:
        trans.readFrame(0)
        payload = trans.cstringio_buf.read()
    except _UNDECODABLE as exc:
        raise HeaderError(f"bad THeader frame: {type(exc).__name__}: {exc}") from None
    if not payload:
        raise HeaderError("THeader frame without a message")
    return Request(payload, trans.get_headers(), HeaderFrame(trans.protocol_id, trans.flags, trans.sequence_id))


def encode(reply: bytes, header: HeaderFrame) -> bytes:
    """`reply` (a protocol message) as the THeader frame answering a request framed as `header`."""
    out = TMemoryBuffer()
    trans = THeaderTransport(out, _HEADERS_ONLY, header.protocol)
    # A reply is as long as the task list makes it: only the format's own bound (a framed reply has none).
    trans.set_max_frame_size(HARD_MAX_FRAME_SIZE - 1)
    trans.flags = header.flags
    trans.sequence_id = header.sequence_id
    trans.write(reply)
    trans.flush()
    return bytes(out.getvalue())


def _check_headers(frame: bytes, max_header_bytes: int) -> None:
    """Every field of the header area inside it, the area within bounds, its ids known."""
    if len(frame) < _FIXED:
        raise HeaderError("THeader frame shorter than its fixed fields")
    end = _FIXED + 4 * (frame[12] << 8 | frame[13])
    if end - _FIXED > max_header_bytes:
        raise HeaderError(f"THeader header area of {end - _FIXED} bytes, over {max_header_bytes}")
    if end > len(frame):
        raise HeaderError("THeader header area larger than its frame")
    protocol, pos = _varint(frame, _FIXED, end)
    if protocol not in (BINARY, COMPACT):
        raise HeaderError(f"THeader sub-protocol {protocol} is neither binary nor compact")
    count, pos = _varint(frame, pos, end)
    if count > _MAX_TRANSFORMS:
        raise HeaderError(f"{count} THeader transforms")
    for _ in range(count):
        transform, pos = _varint(frame, pos, end)
        if transform not in KNOWN_READ_TRANSFORM_IDS:
            raise HeaderError(f"unknown THeader transform {transform}")
    while pos < end:
        kind, pos = _varint(frame, pos, end)
        if kind != TInfoHeaderType.KEY_VALUE:
            return  # padding (0), or a kind thrift skips the rest of the area for
        pairs, pos = _varint(frame, pos, end)
        for _ in range(2 * pairs):  # each string takes a byte at least: bounded by the area
            size, pos = _varint(frame, pos, end)
            pos += size
            if pos > end:
                raise HeaderError("THeader info header runs past the header area")


def _varint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    """The unsigned 32-bit varint at `pos` (at most 5 bytes, inside `end`), and the position after it."""
    value = shift = 0
    for i in range(pos, min(pos + 5, end)):
        byte = buf[i]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i + 1
        shift += 7
    raise HeaderError("THeader varint truncated or over 5 bytes")
