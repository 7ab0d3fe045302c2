"""The client's two wire formats (app/thrift_header.py) against thrift's own reading and writing of them:
framed binary byte for byte as thrift's TFramedTransport writes it, THeader as THeaderProtocol reads it."""

from __future__ import annotations

from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.Thrift import TMessageType
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TTransport import TFramedTransport, TMemoryBuffer

from app import thrift_header
from RPC import RPCcelery
from RPC.ttypes import BadTask
from tests.app.theader_server import ENDED, record

HEADERS = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", "tracestate": "k=v"}


def test_framed_call_is_what_thrift_frames() -> None:
    out = TMemoryBuffer()
    framed = TFramedTransport(out)
    prot = TBinaryProtocol(framed)
    prot.writeMessageBegin("getTaskStatus", TMessageType.CALL, 7)
    RPCcelery.getTaskStatus_args(ENDED).write(prot)
    prot.writeMessageEnd()
    framed.flush()
    assert thrift_header.framed_call("getTaskStatus", 7, RPCcelery.getTaskStatus_args(ENDED)) == out.getvalue()


def test_header_call_is_read_by_thrift_with_its_headers() -> None:
    frame = thrift_header.header_call("getTaskStatus", 9, RPCcelery.getTaskStatus_args(ENDED), HEADERS)
    assert frame[4:6] == b"\x0f\xff"  # THeader's magic after the length
    prot = THeaderProtocol(TMemoryBuffer(frame), (THeaderClientType.HEADERS,))
    assert prot.readMessageBegin() == ("getTaskStatus", TMessageType.CALL, 9)
    args = RPCcelery.getTaskStatus_args()
    args.read(prot)
    assert args.uuid == ENDED
    assert prot.get_headers() == {k.encode(): v.encode() for k, v in HEADERS.items()}


def _reply(result: object, seqid: int) -> bytes:
    out = TMemoryBuffer()
    prot = THeaderProtocol(out, (THeaderClientType.HEADERS,))
    prot.writeMessageBegin("getTaskStatus", TMessageType.REPLY, seqid)
    result.write(prot)  # type: ignore[attr-defined]  # a generated struct
    prot.writeMessageEnd()
    prot.trans.flush()
    frame: bytes = out.getvalue()
    return frame


def test_header_reply_is_read() -> None:
    prot = thrift_header.header_reply(_reply(RPCcelery.getTaskStatus_result(success=record(ENDED, "SUCCESS")), 3))
    assert prot.readMessageBegin() == ("getTaskStatus", TMessageType.REPLY, 3)
    result = RPCcelery.getTaskStatus_result()
    result.read(prot)
    assert result.success.id == ENDED and result.success.digits == "3.14"

    prot = thrift_header.header_reply(_reply(RPCcelery.getTaskStatus_result(bt=BadTask(message="no such task")), 4))
    prot.readMessageBegin()
    result = RPCcelery.getTaskStatus_result()
    result.read(prot)
    assert result.bt == BadTask(message="no such task")


def test_trace_headers_are_empty_without_a_span() -> None:
    assert thrift_header.trace_headers() == {}
