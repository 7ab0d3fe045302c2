"""tserver.runtime with THeader clients (thrift's own THeaderTransport/THeaderProtocol over TSocket) on the same
port as unframed and framed ones: replies in THeader as thrift's server gives them, per frame, within limits."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
import zlib

import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.THeaderTransport import THeaderClientType, THeaderSubprotocolID, THeaderTransport
from thrift.transport.TTransport import TMemoryBuffer

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask
from tests.tserver.runtime_harness import (
    KNOWN,
    LONG_ID,
    LOOPS,
    MB,
    assert_serves,
    client_on,
    connect,
    frame,
    status_call,
    stock_client,
    wait_closed_by_server,
)
from tests.tserver.theader_wire import header_client, header_frame, raw_header_frame

ZLIB = 0x01


def read_header_reply(sock: socket.socket) -> THeaderTransport:
    """One THeader reply frame read from `sock`, decoded by thrift's own transport (its payload unread)."""
    head = _recv_exactly(sock, 4)
    body = _recv_exactly(sock, struct.unpack("!i", head)[0])
    trans = THeaderTransport(TMemoryBuffer(head + body), (THeaderClientType.HEADERS,))
    trans.readFrame(0)
    return trans


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "the server closed the connection"
        data += chunk
    return data


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("compact", [False, True], ids=["binary", "compact"])
def test_stock_theader_client_gets_every_kind_of_answer(make_server, loop, compact):
    srv = make_server(delay=0.05, loop=loop)
    with header_client(srv.port, compact=compact) as client:
        assert client.getTaskStatus(KNOWN).digits == "3.14"  # a plain method, in the pool
        assert client.queueCalcPi(7).id == "queued-7"  # a coroutine method, on the loop
        with pytest.raises(BadTask):
            client.getTaskStatus("nope")
        with pytest.raises(BadDecimal) as bd:
            client.queueCalcPi(99)
        assert (bd.value.min_decimal, bd.value.max_decimal) == (1, 50)
        with pytest.raises(TApplicationException) as app:
            client.queueCalcPi(13)
        assert app.value.type == TApplicationException.INTERNAL_ERROR
        with pytest.raises(TApplicationException) as app:
            client.listTasks()
        assert app.value.type == TApplicationException.INTERNAL_ERROR
        for i in range(50):  # one connection, many calls
            assert client.getTaskStatus(f"echo-{i}").id == f"echo-{i}"
        assert client.getTaskStatus(LONG_ID).id == LONG_ID
    # The other framings still work on the same port.
    assert_serves(srv.port)
    assert_serves(srv.port, framed=True)


@pytest.mark.timeout(30)
def test_zlib_transformed_requests_are_read(make_server):
    srv = make_server()
    with header_client(srv.port) as client:
        client._iprot.trans.add_transform(ZLIB)  # every request from here on is compressed
        assert client.getTaskStatus(LONG_ID).id == LONG_ID
        assert client.getTaskStatus(KNOWN).id == KNOWN


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    "protocol", [THeaderSubprotocolID.BINARY, THeaderSubprotocolID.COMPACT], ids=["binary", "compact"]
)
def test_the_reply_is_framed_as_thrifts_server_frames_it(make_server, protocol):
    """Same sub-protocol, flags and sequence id; the request's info headers and transforms not echoed."""
    srv = make_server()
    from thrift.protocol.TCompactProtocol import TCompactProtocol

    buf = TMemoryBuffer()
    prot = TCompactProtocol(buf) if protocol == THeaderSubprotocolID.COMPACT else TBinaryProtocol(buf)
    prot.writeMessageBegin("getTaskStatus", TMessageType.CALL, 77)
    RPCcelery.getTaskStatus_args(uuid=KNOWN).write(prot)
    prot.writeMessageEnd()
    request = header_frame(
        buf.getvalue(),
        {b"traceparent": b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01", b"x-other": b"y"},
        protocol=protocol,
        flags=0x0001,
        seqid=77,
        transforms=(ZLIB,),
    )
    with connect(srv.port) as sock:
        sock.sendall(request)
        reply = read_header_reply(sock)
    assert (reply.protocol_id, reply.flags, reply.sequence_id) == (protocol, 0x0001, 77)
    assert reply.get_headers() == {}
    payload = reply.cstringio_buf.read()
    iprot = TCompactProtocol(TMemoryBuffer(payload)) if protocol else TBinaryProtocol(TMemoryBuffer(payload))
    assert iprot.readMessageBegin() == ("getTaskStatus", TMessageType.REPLY, 77)
    result = RPCcelery.getTaskStatus_result()
    result.read(iprot)
    assert result.success.id == KNOWN


@pytest.mark.timeout(30)
def test_framings_mix_frame_by_frame_and_pipelined_replies_keep_their_order(make_server):
    srv = make_server()
    calls = [
        header_frame(status_call("echo-0", 1)),
        frame(status_call("echo-1", 2)),
        header_frame(status_call("echo-2", 3), {b"traceparent": b"garbage"}),
        frame(status_call("echo-3", 4)),
    ]
    with connect(srv.port) as sock:
        sock.sendall(b"".join(calls))  # pipelined: all at once
        client = client_on(sock, framed=True)
        for i in range(4):
            if i % 2 == 0:
                reply = read_header_reply(sock)
                iprot = TBinaryProtocol(TMemoryBuffer(reply.cstringio_buf.read()))
                assert iprot.readMessageBegin()[2] == i + 1
                result = RPCcelery.getTaskStatus_result()
                result.read(iprot)
                assert result.success.id == f"echo-{i}"
            else:
                assert client.recv_getTaskStatus().id == f"echo-{i}"


@pytest.mark.timeout(30)
def test_a_theader_request_dribbled_byte_by_byte_is_answered(make_server):
    srv = make_server()
    request = header_frame(status_call(LONG_ID), {b"traceparent": b"00-" + b"a" * 32 + b"-" + b"b" * 16 + b"-01"})
    with connect(srv.port) as sock:
        for i in range(len(request)):
            sock.sendall(request[i : i + 1])
        reply = read_header_reply(sock)
    iprot = TBinaryProtocol(TMemoryBuffer(reply.cstringio_buf.read()))
    iprot.readMessageBegin()
    result = RPCcelery.getTaskStatus_result()
    result.read(iprot)
    assert result.success.id == LONG_ID


@pytest.mark.timeout(30)
def test_limits_apply_to_theader_frames(make_server):
    srv = make_server(max_message_bytes=64 * 1024, max_header_bytes=1024)
    big_headers = {b"tracestate": b"k=" + b"v" * 2000}  # a header area over max_header_bytes
    # 2 MiB of a string claim inside, compressed to a few KiB: inflated past max_message_bytes.
    bomb = zlib.compress(status_call("x" * (2 * MB)))
    cases = {
        "frame over max_message_bytes": header_frame(status_call("x" * (65 * 1024))),
        "header area over max_header_bytes": header_frame(status_call(), big_headers),
        "zlib bomb": raw_header_frame(b"\x00\x01\x01\x00", bomb),  # binary, one transform: zlib
    }
    for name, request in cases.items():
        started = time.monotonic()
        with connect(srv.port) as sock:
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # thrown out while sending
                sock.sendall(request)
            assert wait_closed_by_server(sock, 2.0) < 1.0, name
        assert time.monotonic() - started < 1.5, name
    with header_client(srv.port) as client:  # within the limits, all is well
        assert client.getTaskStatus(KNOWN).id == KNOWN
    with stock_client(srv.port, framed=True) as client:
        assert client.getTaskStatus(KNOWN).id == KNOWN
