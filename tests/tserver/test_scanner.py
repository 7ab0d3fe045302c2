"""tserver.runtime.scanner: where an unframed binary message ends, at any split, within its limits."""

from __future__ import annotations

import random
import struct
import time

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType, TType
from thrift.transport import TTransport

from RPC.ttypes import CpuStatus, DiskStatus, HostStatus, MemoryStatus, TaskPage, calcResult
from tests.tserver.runtime_harness import (
    MB,
    _record,
    call_header,
    encode_call,
    status_call,
)
from tserver.runtime.scanner import MessageScanner, ScanError

# --------------------------------------------------------------------------------------------------
# The incremental scanner
# --------------------------------------------------------------------------------------------------


def _scanner(**kw) -> MessageScanner:
    args = dict(max_bytes=MB, string_length_limit=MB, container_length_limit=100_000)
    args.update(kw)
    return MessageScanner(
        args.pop("max_bytes"), args.pop("string_length_limit"), args.pop("container_length_limit"), **args
    )


def _rich_message() -> bytes:
    """A CALL whose args struct holds every wire type: nested structs, list<struct>, map, set, bool, uuid."""
    buf = TTransport.TMemoryBuffer()
    p = TBinaryProtocol(buf)
    p.writeMessageBegin("anything", TMessageType.CALL, 7)
    p.writeStructBegin("args")
    p.writeFieldBegin("host", TType.STRUCT, 1)
    HostStatus(
        hostname="h" * 50,
        ip="10.0.0.1",
        cpu=CpuStatus(percent=5.5, count=4, load_average=[1.0] * 20),
        memory=MemoryStatus(total=10, available=5, percent=50.0),
        disk=DiskStatus(path="/var", total=3, free=2, percent=33.0),
    ).write(p)
    p.writeFieldEnd()
    p.writeFieldBegin("page", TType.STRUCT, 2)
    TaskPage(tasks=[_record(f"id-{i}") for i in range(5)], total=5).write(p)
    p.writeFieldEnd()
    p.writeFieldBegin("m", TType.MAP, 3)  # map<string, list<i32>>
    p.writeMapBegin(TType.STRING, TType.LIST, 2)
    for key in ("a", "bb"):
        p.writeString(key)
        p.writeListBegin(TType.I32, 3)
        for v in (1, 2, 3):
            p.writeI32(v)
        p.writeListEnd()
    p.writeMapEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("fixed", TType.MAP, 4)  # map<i16, double>: skipped in one step
    p.writeMapBegin(TType.I16, TType.DOUBLE, 3)
    for k in range(3):
        p.writeI16(k)
        p.writeDouble(k / 2)
    p.writeMapEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("s", TType.SET, 5)
    p.writeSetBegin(TType.STRING, 2)
    p.writeString("x")
    p.writeString("")
    p.writeSetEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("empty", TType.LIST, 6)
    p.writeListBegin(TType.STRUCT, 0)
    p.writeListEnd()
    p.writeFieldEnd()
    p.writeFieldBegin("flag", TType.BOOL, 7)
    p.writeBool(True)
    p.writeFieldEnd()
    p.writeFieldBegin("b", TType.BYTE, 8)
    p.writeByte(-3)
    p.writeFieldEnd()
    p.writeFieldBegin("u", TType.UUID, 9)
    p.trans.write(bytes(range(16)))
    p.writeFieldEnd()
    p.writeFieldBegin("lm", TType.LIST, 10)  # list<map<i32, struct>>
    p.writeListBegin(TType.MAP, 2)
    for _ in range(2):
        p.writeMapBegin(TType.I32, TType.STRUCT, 1)
        p.writeI32(9)
        MemoryStatus(total=1, available=2, percent=3.0).write(p)
        p.writeMapEnd()
    p.writeListEnd()
    p.writeFieldEnd()
    p.writeFieldStop()
    p.writeStructEnd()
    p.writeMessageEnd()
    return buf.getvalue()


def test_scanner_finds_the_exact_end_at_any_split():
    msg = _rich_message()
    follow = status_call()  # the next message already in the buffer must not be swallowed
    rng = random.Random(1)
    for _ in range(40):
        scanner = _scanner()
        buf = bytearray()
        cuts = [*sorted(rng.sample(range(1, len(msg)), 12)), len(msg)]
        start = 0
        for cut in cuts:
            buf += msg[start:cut]
            start = cut
            result = scanner.feed(buf)
            if cut < len(msg):
                assert result is None, f"claimed complete at {result} of {len(msg)} bytes"
        assert result == len(msg)
        buf += follow[:7]
        assert scanner.feed(buf) == len(msg)
        scanner.reset()
        del buf[: len(msg)]
        buf += follow[7:]
        assert scanner.feed(buf) == len(follow)


@pytest.mark.timeout(20)
def test_scanner_one_byte_at_a_time_is_linear():
    # 30,000 strings: a scanner that re-parses from the start on every byte would take ~10^10 steps.
    args = TaskPage(tasks=[calcResult(id=f"{i:05d}", status="S", pushqtime="t") for i in range(30_000)], total=1)
    msg = encode_call("big", args)
    assert len(msg) > 500_000
    scanner = _scanner()
    buf = bytearray()
    t0 = time.process_time()
    for i in range(len(msg) - 1):
        buf.append(msg[i])
        assert scanner.feed(buf) is None
    buf.append(msg[-1])
    assert scanner.feed(buf) == len(msg)
    assert time.process_time() - t0 < 5.0


@pytest.mark.parametrize(
    ("data", "kw"),
    [
        (b"\x80\x02\x00\x01" + b"\x00" * 20, {}),  # bad version
        (struct.pack("!Ii", 0x80010000 | TMessageType.REPLY, 1) + b"x\x00\x00\x00\x01\x00", {}),  # not a call
        (call_header() + b"\x0b\x00\x01" + struct.pack("!i", 1 << 30), {}),  # 1 GB string claim
        (call_header() + b"\x0b\x00\x01" + struct.pack("!i", -1), {}),  # negative length
        (call_header() + b"\x0f\x00\x02\x08" + struct.pack("!i", 2**31 - 1), {}),  # huge list
        (call_header() + b"\x0d\x00\x02\x0b\x0b" + struct.pack("!i", 200_000), {}),  # huge map
        (call_header() + b"\x0f\x00\x02\x08" + struct.pack("!i", 90_000), {"max_bytes": 1000}),  # over max_bytes
        (call_header() + b"\x0c\x00\x01" * 100, {}),  # nesting bomb
        (call_header() + b"\x05\x00\x01", {}),  # unknown field type
        (call_header() + b"\x0f\x00\x02\x01" + struct.pack("!i", 1), {}),  # list of VOID
        (struct.pack("!Ii", 0x80010001, 1 << 30), {}),  # 1 GB method name claim
        (call_header() + b"\x0b\x00\x01" + struct.pack("!i", 200), {"string_length_limit": 100}),
        (call_header() + b"\x0f\x00\x02\x08" + struct.pack("!i", 200_000), {}),  # 800 kB: fits max_bytes
    ],
    ids=[
        "version",
        "reply",
        "string-1GB",
        "string-neg",
        "list-huge",
        "map-huge",
        "max-bytes",
        "depth",
        "field-type",
        "elem-type",
        "name-1GB",
        "string-limit",
        "container-limit",
    ],
)
def test_scanner_rejects(data, kw):
    with pytest.raises(ScanError):
        _scanner(**kw).feed(bytearray(data))


def test_scanner_depth_limit_is_exact():
    def nested(depth: int) -> bytes:  # the args struct plus depth-1 nested structs
        return call_header() + b"\x0c\x00\x01" * (depth - 1) + b"\x00" * depth

    assert _scanner().feed(bytearray(nested(64))) == len(nested(64))
    with pytest.raises(ScanError):
        _scanner().feed(bytearray(nested(65)))
