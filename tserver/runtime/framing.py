"""Framing: where one request ends in a connection's bytes, and how its reply is wrapped.

A connection's first byte decides its framing, kept for its whole life:

* ``0x80`` -- a strict binary message (version word ``0x8001xxxx``) on an unframed transport, as
  stock clients built on ``TBufferedTransport(TSocket)`` send it (the original demo's client). The
  end of the message is found by :class:`MessageScanner`, which resumes where it stopped, so a
  client sending one byte at a time costs O(n), not O(n^2).
* ``0x00`` -- a frame: a 4-byte big-endian length, then either the message (``TFramedTransport``) or,
  when the payload starts with the magic 0x0FFF, a THeader frame (theader.py): info headers (the trace
  context), then the message in binary or compact. Frame by frame, as thrift's THeaderTransport reads.
* anything else -- refused (old-style non-strict messages are not accepted).

Each reply goes back in the framing of its request.
"""

from __future__ import annotations

import struct

from tserver.runtime import theader
from tserver.runtime.limits import ServerLimits
from tserver.runtime.request import Request
from tserver.runtime.scanner import MessageScanner, ScanError

_unpack_i32 = struct.Struct("!i").unpack_from
_pack_i32 = struct.Struct("!i").pack


class FramingError(Exception):
    """The bytes cannot start or continue a request: the connection is closed."""


class Framing:
    """Cuts one connection's buffer into request messages, and wraps its replies."""

    UNKNOWN, UNFRAMED, FRAMED = "unknown", "unframed", "framed"

    def __init__(self, limits: ServerLimits) -> None:
        self._limits = limits
        self.kind = self.UNKNOWN
        self._scanner: MessageScanner | None = None
        self._frame_len = -1

    def cut(self, buf: bytearray) -> Request | None:
        """The first complete message of `buf`, removed from it; None while it is incomplete.

        Raises FramingError when the bytes cannot be a request (they are never allocated from)."""
        if self.kind == self.UNKNOWN:
            self._sniff(buf[0])
        if self.kind == self.FRAMED:
            return self._cut_frame(buf)
        assert self._scanner is not None
        try:
            end = self._scanner.feed(buf)
        except ScanError as exc:
            raise FramingError(str(exc)) from None
        if end is None:
            return None
        message = bytes(buf[:end])
        del buf[:end]
        self._scanner.reset()
        return Request(message)

    def wrap(self, reply: bytes, request: Request) -> bytes:
        """The reply's bytes on the wire, in the framing of `request`."""
        if request.header is not None:
            return theader.encode(reply, request.header)
        return _pack_i32(len(reply)) + reply if self.kind == self.FRAMED else reply

    def _sniff(self, first: int) -> None:
        limits = self._limits
        if first == 0x80:
            self.kind = self.UNFRAMED
            self._scanner = MessageScanner(
                limits.max_message_bytes, limits.string_length_limit, limits.container_length_limit
            )
        elif first == 0x00:
            self.kind = self.FRAMED
        else:
            raise FramingError(f"first byte 0x{first:02x} is neither a strict binary message nor a frame")

    def _cut_frame(self, buf: bytearray) -> Request | None:
        if self._frame_len < 0:
            if len(buf) < 4:
                return None
            claimed = _unpack_i32(buf, 0)[0]
            if claimed <= 0 or claimed > self._limits.max_message_bytes:
                raise FramingError(f"frame length {claimed} outside 1..{self._limits.max_message_bytes}")
            self._frame_len = claimed
        end = 4 + self._frame_len
        if len(buf) < end:
            return None
        self._frame_len = -1
        if buf[4:6] == theader.MAGIC:
            frame = bytes(buf[:end])
            del buf[:end]
            try:
                return theader.decode(frame, self._limits.max_message_bytes, self._limits.max_header_bytes)
            except theader.HeaderError as exc:
                raise FramingError(str(exc)) from None
        message = bytes(buf[4:end])
        del buf[:end]
        return Request(message)
