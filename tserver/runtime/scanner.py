"""MessageScanner: finds where one unframed TBinaryProtocol message ends, without re-parsing.

A stock Thrift client on a buffered (unframed) transport sends a message with no length in front.
The server must know when it is complete before handing it to the thread pool, and a client that
sends one byte at a time must not cost O(n^2) re-parses: the scanner resumes where it stopped, so
every byte is looked at once. It also enforces the string, container, depth and size limits before
anything is allocated from a length claim.
"""

from __future__ import annotations

import struct

__all__ = ["MessageScanner", "ScanError"]


class ScanError(Exception):
    """The bytes are not an acceptable binary-protocol message (or exceed a limit)."""


# TType codes (thrift.Thrift.TType) and the wire size of the fixed-size ones.
_T_STRING, _T_STRUCT, _T_MAP, _T_SET, _T_LIST = 11, 12, 13, 14, 15
_FIXED_SIZE = {2: 1, 3: 1, 4: 8, 6: 2, 8: 4, 10: 8, 16: 16}  # BOOL BYTE DOUBLE I16 I32 I64 UUID
_VALID_TYPES = frozenset(_FIXED_SIZE) | {_T_STRING, _T_STRUCT, _T_MAP, _T_SET, _T_LIST}

_VERSION_MASK = 0xFFFF0000
_VERSION_1 = 0x80010000
_ACCEPTED_MESSAGE_TYPES = (1, 4)  # CALL, ONEWAY

# Scanner steps. Each step needs a known number of bytes and consumes them exactly once.
_S_VERSION, _S_NAMELEN, _S_NAME, _S_SEQID, _S_FIELD, _S_STRLEN, _S_SKIP, _S_LIST, _S_MAP, _S_DONE = range(10)
_STEP_NEED = {_S_VERSION: 4, _S_NAMELEN: 4, _S_SEQID: 4, _S_STRLEN: 4, _S_LIST: 5, _S_MAP: 6}
# Stack frame kinds: [_K_STRUCT] | [_K_LIST, elem_type, remaining] | [_K_MAP, ktype, vtype, remaining_items]
_K_STRUCT, _K_LIST, _K_MAP = 0, 1, 2

_unpack_i32 = struct.Struct("!i").unpack_from
_unpack_u32 = struct.Struct("!I").unpack_from


class MessageScanner:
    """Finds where one strict binary-protocol message ends, fed a growing buffer piece by piece.

    ``feed(buf)`` is called with the connection's buffer (the message starts at offset 0) each time
    bytes were appended. It continues from where the previous call stopped, so every byte is looked
    at once, and returns the message's length once it is complete, else ``None``. It raises
    :class:`ScanError` as soon as the bytes cannot be an acceptable message: a bad version word or
    message type, an unknown field type, a negative or too large string/container length, nesting
    deeper than ``max_depth``, or a message that would be longer than ``max_bytes``. Nothing is
    allocated from a length claim. Call ``reset()`` before scanning the next message.
    """

    __slots__ = ("_container_limit", "_max_bytes", "_max_depth", "_n", "_pos", "_stack", "_step", "_string_limit")

    def __init__(
        self, max_bytes: int, string_length_limit: int, container_length_limit: int, max_depth: int = 64
    ) -> None:
        self._max_bytes = max_bytes
        self._string_limit = string_length_limit
        self._container_limit = container_length_limit
        self._max_depth = max_depth
        self.reset()

    def reset(self) -> None:
        self._pos = 0
        self._step = _S_VERSION
        self._n = 0
        self._stack: list[list[int]] = []

    @property
    def position(self) -> int:
        """Bytes of the current message consumed so far."""
        return self._pos

    def feed(self, buf: bytes | bytearray | memoryview) -> int | None:
        if self._step == _S_DONE:
            return self._pos
        end = len(buf)
        pos = self._pos
        max_bytes = self._max_bytes
        while True:
            step = self._step
            if step == _S_FIELD:
                if pos >= end:
                    break
                ftype = buf[pos]
                if ftype == 0:  # STOP: the struct ends
                    pos += 1
                    self._stack.pop()
                    self._value_done()
                    if self._step == _S_DONE:
                        self._pos = pos
                        return pos
                    continue
                need = 3  # type byte + i16 field id
            elif step in (_S_SKIP, _S_NAME):
                need = self._n
            else:
                need = _STEP_NEED[step]
            if pos + need > max_bytes:
                raise ScanError(f"message longer than {max_bytes} bytes")
            if end - pos < need:
                break

            if step == _S_SKIP:
                pos += need
                self._value_done()
            elif step == _S_FIELD:
                pos += 3
                self._begin_value(ftype)
            elif step == _S_STRLEN:
                length = _unpack_i32(buf, pos)[0]
                pos += 4
                if length < 0 or length > self._string_limit:
                    raise ScanError(f"string length {length} outside 0..{self._string_limit}")
                self._step = _S_SKIP
                self._n = length
            elif step == _S_LIST:
                etype = buf[pos]
                count = _unpack_i32(buf, pos + 1)[0]
                pos += 5
                self._check_count(count)
                if count == 0:
                    self._value_done()
                elif etype in _FIXED_SIZE:
                    self._step = _S_SKIP
                    self._n = count * _FIXED_SIZE[etype]
                else:
                    self._push([_K_LIST, etype, count])
                    self._begin_value(etype)
            elif step == _S_MAP:
                ktype = buf[pos]
                vtype = buf[pos + 1]
                count = _unpack_i32(buf, pos + 2)[0]
                pos += 6
                self._check_count(count)
                if count == 0:
                    self._value_done()
                elif ktype in _FIXED_SIZE and vtype in _FIXED_SIZE:
                    self._step = _S_SKIP
                    self._n = count * (_FIXED_SIZE[ktype] + _FIXED_SIZE[vtype])
                else:
                    if vtype not in _VALID_TYPES:
                        raise ScanError(f"bad map value type {vtype}")
                    self._push([_K_MAP, ktype, vtype, 2 * count])
                    self._begin_value(ktype)
            elif step == _S_VERSION:
                word = _unpack_u32(buf, pos)[0]
                if word & _VERSION_MASK != _VERSION_1:
                    raise ScanError(f"bad version word 0x{word:08x}")
                if word & 0xFF not in _ACCEPTED_MESSAGE_TYPES:
                    raise ScanError(f"message type {word & 0xFF} is not CALL or ONEWAY")
                pos += 4
                self._step = _S_NAMELEN
            elif step == _S_NAMELEN:
                length = _unpack_i32(buf, pos)[0]
                pos += 4
                if length < 0 or length > self._string_limit:
                    raise ScanError(f"method name length {length} outside 0..{self._string_limit}")
                self._step = _S_NAME
                self._n = length
            elif step == _S_NAME:
                pos += need
                self._step = _S_SEQID
            elif step == _S_SEQID:
                pos += 4
                self._push([_K_STRUCT])  # the arguments struct
                self._step = _S_FIELD
            if self._step == _S_DONE:
                self._pos = pos
                return pos
        self._pos = pos
        return None

    # -- helpers ----------------------------------------------------------------------------------

    def _check_count(self, count: int) -> None:
        if count < 0 or count > self._container_limit:
            raise ScanError(f"container size {count} outside 0..{self._container_limit}")

    def _push(self, frame: list[int]) -> None:
        if len(self._stack) >= self._max_depth:
            raise ScanError(f"nesting deeper than {self._max_depth}")
        self._stack.append(frame)

    def _begin_value(self, ttype: int) -> None:
        size = _FIXED_SIZE.get(ttype)
        if size is not None:
            self._step = _S_SKIP
            self._n = size
        elif ttype == _T_STRING:
            self._step = _S_STRLEN
        elif ttype == _T_STRUCT:
            self._push([_K_STRUCT])
            self._step = _S_FIELD
        elif ttype in (_T_LIST, _T_SET):
            self._step = _S_LIST
        elif ttype == _T_MAP:
            self._step = _S_MAP
        else:
            raise ScanError(f"bad field type {ttype}")

    def _value_done(self) -> None:
        """A value is complete: decide what the enclosing struct or container expects next."""
        stack = self._stack
        while stack:
            top = stack[-1]
            kind = top[0]
            if kind == _K_STRUCT:
                self._step = _S_FIELD
                return
            if kind == _K_LIST:
                top[2] -= 1
                if top[2] > 0:
                    self._begin_value(top[1])
                    return
            else:  # map: items alternate key, value; an even number left means a key is next
                top[3] -= 1
                if top[3] > 0:
                    self._begin_value(top[1] if top[3] % 2 == 0 else top[2])
                    return
            stack.pop()
        self._step = _S_DONE
