"""tserver.transport: a real ThriftServer on 127.0.0.1:0 in a background thread, real sockets.

The handler here is a tiny in-test RPCcelery.Iface; the server under test is the asyncio transport
(framing sniffing, incremental scanning of unframed messages, limits, timeouts, the bounded pool).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from thrift.Thrift import TApplicationException, TMessageType, TType
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask, CpuStatus, DiskStatus, HostStatus, MemoryStatus, TaskPage, calcResult
from tserver.scanner import MessageScanner, ScanError
from tserver.transport import ServerLimits, ThriftServer

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "0b7f3c1e-5d2a-4c8e-9f10-1234567890ab"
LONG_ID = "L" * 300  # a known id whose request is long enough to dribble byte by byte
MB = 1 << 20

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
    uvloop = None
# The server runs on uvloop in production (run() picks it) and must also work on plain asyncio.
LOOPS = [pytest.param("asyncio"),
         pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop not installed"))]


# --------------------------------------------------------------------------------------------------
# In-test handler and server harness
# --------------------------------------------------------------------------------------------------

def _record(task_id: str) -> calcResult:
    return calcResult(id=task_id, status="SUCCESS", pushqtime="2024-01-01T00:00:00+00:00", result=3.14,
                      decimal=2, progress=100.0, digits="3.14", terms=400)


class Handler(RPCcelery.Iface):
    """getTaskStatus: known ids or BadTask; startCalcPi: 1..50 or BadDecimal; getHostStatus: slow."""

    def __init__(self, delay: float = 0.3) -> None:
        self.delay = delay
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0
        self.calls = 0
        self.tasks = {KNOWN: _record(KNOWN), LONG_ID: _record(LONG_ID)}
        self.async_threads: set[str] = set()
        self.async_active = 0
        self.async_max_active = 0

    def startCalcPi(self, decimal):
        if not 1 <= decimal <= 50:
            raise BadDecimal(message=f"decimal must be within 1..50, got {decimal}", min_decimal=1, max_decimal=50)
        return f"task-{decimal}"

    async def queueCalcPi(self, decimal):
        # A coroutine method: the server awaits it on its event loop instead of using a pool thread.
        self.async_threads.add(threading.current_thread().name)
        self.async_active += 1
        self.async_max_active = max(self.async_max_active, self.async_active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.async_active -= 1
        if decimal == 13:
            raise RuntimeError("handler bug")  # not declared: INTERNAL_ERROR
        if not 1 <= decimal <= 50:
            raise BadDecimal(message=f"decimal must be within 1..50, got {decimal}", min_decimal=1, max_decimal=50)
        return _record(f"queued-{decimal}")

    def getTaskStatus(self, uuid):
        with self.lock:
            self.calls += 1
        if uuid in self.tasks:
            return self.tasks[uuid]
        if uuid.startswith("echo-"):
            return _record(uuid)
        raise BadTask(message=f"unknown task {uuid[:40]}")

    def listTasks(self):
        raise RuntimeError("handler bug")  # the generated processor turns this into INTERNAL_ERROR

    def getHostStatus(self):
        with self.lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
        finally:
            with self.lock:
                self.active -= 1
        return HostStatus(hostname="h", ip="127.0.0.1", cpu=CpuStatus(percent=1.0, count=2, load_average=[0.1, 0.2, 0.3]),
                          memory=MemoryStatus(total=1, available=1, percent=0.0),
                          disk=DiskStatus(path="/", total=1, free=1, percent=0.0))


class ServerThread:
    """A ThriftServer on 127.0.0.1:0 with its own event loop in a background thread."""

    def __init__(self, limits: ServerLimits, delay: float = 0.3, loop: str = "asyncio") -> None:
        self.handler = Handler(delay)
        self.limits = limits
        self.server = ThriftServer(RPCcelery.Processor(self.handler), "127.0.0.1", 0, limits)
        self.loop = uvloop.new_event_loop() if loop == "uvloop" else asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-tserver-loop", daemon=True)
        self.stopped = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self.loop.run_until_complete(self.server.serve_forever())

    def start(self) -> ServerThread:
        self.thread.start()
        assert self._started.wait(5), "server did not start"
        if self._error is not None:
            raise self._error
        return self

    @property
    def port(self) -> int:
        return self.server.port

    def close(self, timeout: float = 15.0) -> None:
        if self.stopped:
            return
        self.stopped = True
        if self.thread.is_alive():
            asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(timeout)
            self.thread.join(5)
            assert not self.thread.is_alive(), "server loop thread did not end"
        self.loop.close()


@pytest.fixture
def make_server():
    servers: list[ServerThread] = []

    def make(delay: float = 0.3, loop: str = "asyncio", **limits) -> ServerThread:
        limits.setdefault("workers", 4)
        srv = ServerThread(ServerLimits(**limits), delay, loop).start()
        servers.append(srv)
        return srv

    yield make
    for srv in servers:
        srv.close()


@contextlib.contextmanager
def stock_client(port: int, framed: bool = False, timeout: float = 5.0):
    """The generated client on TSocket, buffered (unframed, as the original) or framed."""
    sock = TSocket.TSocket("127.0.0.1", port)
    sock.setTimeout(int(timeout * 1000))
    trans = TTransport.TFramedTransport(sock) if framed else TTransport.TBufferedTransport(sock)
    trans.open()
    try:
        yield RPCcelery.Client(TBinaryProtocol(trans))
    finally:
        trans.close()


def client_on(sock: socket.socket, framed: bool) -> RPCcelery.Client:
    """A generated client reading replies from an already connected raw socket."""
    tsock = TSocket.TSocket()
    tsock.handle = sock
    trans = TTransport.TFramedTransport(tsock) if framed else TTransport.TBufferedTransport(tsock)
    return RPCcelery.Client(TBinaryProtocol(trans))


def encode_call(name: str, args, seqid: int = 1) -> bytes:
    buf = TTransport.TMemoryBuffer()
    prot = TBinaryProtocol(buf)
    prot.writeMessageBegin(name, TMessageType.CALL, seqid)
    args.write(prot)
    prot.writeMessageEnd()
    return buf.getvalue()


def call_header(name: str = "getTaskStatus", seqid: int = 1) -> bytes:
    return struct.pack("!Ii", 0x80010000 | TMessageType.CALL, len(name)) + name.encode() + struct.pack("!i", seqid)


def frame(message: bytes) -> bytes:
    return struct.pack("!i", len(message)) + message


def status_call(task_id: str = KNOWN, seqid: int = 1) -> bytes:
    return encode_call("getTaskStatus", RPCcelery.getTaskStatus_args(uuid=task_id), seqid)


def connect(port: int, timeout: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def wait_closed_by_server(sock: socket.socket, timeout: float) -> float:
    """Seconds until the server closed `sock` (EOF or reset); fails after `timeout`."""
    t0 = time.monotonic()
    sock.settimeout(timeout)
    try:
        while True:
            if not sock.recv(65536):
                break
    except (ConnectionResetError, BrokenPipeError):
        pass
    except socket.timeout:
        pytest.fail(f"server kept the connection open for more than {timeout} s")
    return time.monotonic() - t0


def assert_serves(port: int, framed: bool = False) -> None:
    """A real call on a new connection answers correctly within 1 s."""
    t0 = time.monotonic()
    with stock_client(port, framed=framed, timeout=2.0) as client:
        assert client.getTaskStatus(KNOWN).digits == "3.14"
    assert time.monotonic() - t0 < 1.0


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def rss() -> int:
    return psutil.Process().memory_info().rss


def threads() -> int:
    return psutil.Process().num_threads()


def pool_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("tserver-call")}


# --------------------------------------------------------------------------------------------------
# The incremental scanner
# --------------------------------------------------------------------------------------------------

def _scanner(**kw) -> MessageScanner:
    args = dict(max_bytes=MB, string_length_limit=MB, container_length_limit=100_000)
    args.update(kw)
    return MessageScanner(args.pop("max_bytes"), args.pop("string_length_limit"), args.pop("container_length_limit"),
                          **args)


def _rich_message() -> bytes:
    """A CALL whose args struct holds every wire type: nested structs, list<struct>, map, set, bool, uuid."""
    buf = TTransport.TMemoryBuffer()
    p = TBinaryProtocol(buf)
    p.writeMessageBegin("anything", TMessageType.CALL, 7)
    p.writeStructBegin("args")
    p.writeFieldBegin("host", TType.STRUCT, 1)
    HostStatus(hostname="h" * 50, ip="10.0.0.1", cpu=CpuStatus(percent=5.5, count=4, load_average=[1.0] * 20),
               memory=MemoryStatus(total=10, available=5, percent=50.0),
               disk=DiskStatus(path="/var", total=3, free=2, percent=33.0)).write(p)
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
        cuts = sorted(rng.sample(range(1, len(msg)), 12)) + [len(msg)]
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
    "data, kw",
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
    ids=["version", "reply", "string-1GB", "string-neg", "list-huge", "map-huge", "max-bytes", "depth",
         "field-type", "elem-type", "name-1GB", "string-limit", "container-limit"],
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


# --------------------------------------------------------------------------------------------------
# Stock clients, framed and unframed
# --------------------------------------------------------------------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_coroutine_methods_run_on_the_loop_with_the_generated_replies(make_server, framed, loop):
    srv = make_server(delay=0.2, loop=loop, workers=1, slow_workers=1)
    with stock_client(srv.port, framed=framed) as client:
        assert client.queueCalcPi(7).id == "queued-7"
        with pytest.raises(BadDecimal) as bd:  # a declared exception arrives typed, as from the generated code
            client.queueCalcPi(99)
        assert (bd.value.min_decimal, bd.value.max_decimal) == (1, 50)
        with pytest.raises(TApplicationException) as app:
            client.queueCalcPi(13)
        assert app.value.type == TApplicationException.INTERNAL_ERROR
        assert client.getTaskStatus(KNOWN).id == KNOWN  # the connection lives on

    # Twenty at once with one pool thread: they wait together on the loop, not one after another.
    results: list[str] = []

    def one(i: int) -> None:
        with stock_client(srv.port, framed=framed) as c:
            results.append(c.queueCalcPi(20 + i).id)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert sorted(results) == sorted(f"queued-{20 + i}" for i in range(20))
    assert srv.handler.async_max_active == 20
    assert srv.handler.async_threads == {"test-tserver-loop"}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_stock_client_calls_and_typed_exceptions(make_server, framed, loop):
    srv = make_server(delay=0.0, loop=loop)
    with stock_client(srv.port, framed=framed) as client:
        rec = client.getTaskStatus(KNOWN)
        assert (rec.id, rec.status, rec.digits, rec.terms) == (KNOWN, "SUCCESS", "3.14", 400)
        with pytest.raises(BadTask) as bt:
            client.getTaskStatus("nope")
        assert bt.value.message == "unknown task nope"
        assert client.startCalcPi(7) == "task-7"
        with pytest.raises(BadDecimal) as bd:
            client.startCalcPi(99)
        assert (bd.value.min_decimal, bd.value.max_decimal) == (1, 50)
        with pytest.raises(TApplicationException) as app:
            client.listTasks()  # the handler crashed: INTERNAL_ERROR, the connection lives on
        assert app.value.type == TApplicationException.INTERNAL_ERROR
        hs = client.getHostStatus()
        assert hs.cpu.load_average == [0.1, 0.2, 0.3]
        assert client.getTaskStatus(KNOWN).id == KNOWN


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_inline_methods_run_on_the_loop_and_others_in_the_pool(make_server, framed, loop):
    srv = make_server(delay=0.0, loop=loop, inline_methods=frozenset({"getTaskStatus"}))
    threads: dict[str, str] = {}
    original_status, original_host = srv.handler.getTaskStatus, srv.handler.getHostStatus

    def status(uuid):
        threads["getTaskStatus"] = threading.current_thread().name
        return original_status(uuid)

    def host():
        threads["getHostStatus"] = threading.current_thread().name
        return original_host()

    srv.handler.getTaskStatus, srv.handler.getHostStatus = status, host
    with stock_client(srv.port, framed=framed) as client:
        assert client.getTaskStatus(KNOWN).id == KNOWN
        with pytest.raises(BadTask):  # IDL exceptions from an inline call arrive typed as well
            client.getTaskStatus("nope")
        with pytest.raises(TApplicationException):
            client.listTasks()
        client.getHostStatus()
        for i in range(50):  # many inline calls in a row on one connection: answered in order
            assert client.getTaskStatus(f"echo-{i}").id == f"echo-{i}"
    assert threads["getTaskStatus"] == "test-tserver-loop"
    assert threads["getHostStatus"] != "test-tserver-loop"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_many_sequential_calls_on_one_connection(make_server, framed):
    srv = make_server(delay=0.0)
    with stock_client(srv.port, framed=framed) as client:
        for i in range(300):
            if i % 3 == 0:
                with pytest.raises(BadTask):
                    client.getTaskStatus(f"missing-{i}")
            else:
                assert client.getTaskStatus(f"echo-{i}").id == f"echo-{i}"
    assert srv.handler.calls == 300


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_pipelined_messages_are_answered_in_order(make_server, framed, loop):
    srv = make_server(delay=0.2, loop=loop, workers=4)
    messages = [encode_call("getHostStatus", RPCcelery.getHostStatus_args(), seqid=1)]  # slow: 0.2 s
    messages += [status_call(f"echo-{i}", seqid=i) for i in range(2, 6)]
    with connect(srv.port) as sock:
        sock.sendall(b"".join(frame(m) if framed else m for m in messages))  # five calls in one write
        client = client_on(sock, framed)
        assert client._iprot.readMessageBegin() == ("getHostStatus", TMessageType.REPLY, 1)
        result = RPCcelery.getHostStatus_result()
        result.read(client._iprot)
        assert result.success.hostname == "h"
        for i in range(2, 6):  # not before the slow one, although workers were free
            assert client._iprot.readMessageBegin() == ("getTaskStatus", TMessageType.REPLY, i)
            result = RPCcelery.getTaskStatus_result()
            result.read(client._iprot)
            assert result.success.id == f"echo-{i}"


@pytest.mark.timeout(30)
def test_concurrent_clients(make_server):
    srv = make_server(delay=0.0, workers=4)

    def worker(n: int) -> int:
        with stock_client(srv.port, framed=bool(n % 2)) as client:
            for i in range(100):
                assert client.getTaskStatus(f"echo-{n}-{i}").id == f"echo-{n}-{i}"
        return n

    with ThreadPoolExecutor(8) as pool:
        assert sorted(pool.map(worker, range(8))) == list(range(8))
    assert srv.handler.calls == 800


@pytest.mark.timeout(20)
def test_pool_bounds_concurrent_calls(make_server):
    before = pool_threads()  # of servers of other tests
    srv = make_server(delay=0.3, workers=2)

    def slow(_):
        with stock_client(srv.port, framed=True) as client:
            return client.getHostStatus().hostname

    t0 = time.monotonic()
    with ThreadPoolExecutor(6) as pool:
        assert list(pool.map(slow, range(6))) == ["h"] * 6
    elapsed = time.monotonic() - t0
    assert srv.handler.max_active == 2  # never more than `workers` handler calls at once
    assert elapsed >= 3 * 0.3 - 0.05  # six calls of 0.3 s through two threads: three rounds
    assert len(pool_threads() - before) == 2  # the pool has exactly its two threads


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_message_one_byte_at_a_time(make_server, framed, loop):
    srv = make_server(delay=0.0, loop=loop)
    wire = status_call(LONG_ID, seqid=42)
    if framed:
        wire = frame(wire)
    assert len(wire) > 300
    with connect(srv.port) as sock:
        for i in range(len(wire)):
            sock.sendall(wire[i:i + 1])
            time.sleep(0.001)
        assert client_on(sock, framed).recv_getTaskStatus().id == LONG_ID
        # and the connection goes on with a whole message
        sock.sendall(frame(status_call()) if framed else status_call())
        assert client_on(sock, framed).recv_getTaskStatus().id == KNOWN


@pytest.mark.timeout(20)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_unknown_method_is_answered_with_an_error(make_server, framed):
    srv = make_server(delay=0.0)
    msg = encode_call("noSuchMethod", RPCcelery.getTaskStatus_args(uuid="x"), seqid=3)
    with connect(srv.port) as sock:
        sock.sendall(frame(msg) if framed else msg)
        client = client_on(sock, framed)
        name, mtype, seqid = client._iprot.readMessageBegin()
        assert (name, mtype, seqid) == ("noSuchMethod", TMessageType.EXCEPTION, 3)
        exc = TApplicationException()
        exc.read(client._iprot)
        assert exc.type == TApplicationException.UNKNOWN_METHOD
        sock.sendall(frame(status_call()) if framed else status_call())  # still usable
        assert client_on(sock, framed).recv_getTaskStatus().id == KNOWN


# --------------------------------------------------------------------------------------------------
# Hostile input: only that connection goes, the server keeps serving, memory stays put
# --------------------------------------------------------------------------------------------------

MESSAGE_TIMEOUT = 1.5


def _random(seed: int, first: bytes, n: int = 4096) -> bytes:
    return first + random.Random(seed).randbytes(n)


# (payload, client closes after sending, the server must close at once rather than by a timeout)
HOSTILE = {
    "random-bytes": (_random(1, b"\x42"), False, True),
    "random-after-0x80": (_random(2, b"\x80\x07"), False, True),
    "frame-2GB-minus-1": (struct.pack("!I", 0x7FFFFFFF), False, True),
    "frame-2GB": (struct.pack("!I", 0x80000000) + b"\x00" * 8, False, True),
    "frame-just-over-max": (struct.pack("!I", MB + 1), False, True),
    "frame-zero-length": (struct.pack("!I", 0), False, True),
    "unframed-string-1GB": (call_header() + b"\x0b\x00\x01" + struct.pack("!i", 1 << 30) + b"abc", False, True),
    "framed-string-1GB": (frame(call_header() + b"\x0b\x00\x01" + struct.pack("!i", 1 << 30) + b"abc\x00"),
                          False, True),
    "unframed-list-huge": (call_header() + b"\x0f\x00\x02\x08" + struct.pack("!i", 2**31 - 1) + b"\x00" * 64,
                           False, True),
    "framed-list-huge": (frame(call_header() + b"\x0f\x00\x02\x08" + struct.pack("!i", 2**31 - 1) + b"\x00" * 64),
                         False, True),
    "framed-bad-version": (frame(b"\x80\x02\x00\x01" + b"\x00" * 30), False, True),
    "framed-truncated-inside": (frame(status_call()[:-5]), False, True),
    # The same through a coroutine method (queueCalcPi is `async def` in Handler): decoded on the loop.
    "async-method-string-1GB": (frame(call_header("queueCalcPi") + b"\x0b\x00\x01" + struct.pack("!i", 1 << 30)
                                      + b"abc\x00"), False, True),
    "async-method-truncated-inside": (frame(encode_call("queueCalcPi", RPCcelery.queueCalcPi_args(decimal=3))[:-3]),
                                      False, True),
    "nesting-bomb": (call_header() + b"\x0c\x00\x01" * 500, False, True),
    "truncated-frame-then-close": (frame(status_call())[:20], True, True),
    "truncated-unframed-then-close": (status_call()[:20], True, True),
    "slowloris-unframed": (status_call()[:20], False, False),
    "slowloris-frame": (frame(status_call())[:20], False, False),
}


@pytest.fixture(scope="module", params=LOOPS)
def hostile_server(request):
    limits = ServerLimits(workers=2, message_timeout=MESSAGE_TIMEOUT, idle_timeout=10.0)
    srv = ServerThread(limits, loop=request.param)
    srv.start()
    assert_serves(srv.port)  # warm up before memory is measured
    yield srv
    srv.close()


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_input_closes_only_that_connection(hostile_server, case):
    srv = hostile_server
    payload, client_closes, at_once = HOSTILE[case]
    rss_before = rss()
    with stock_client(srv.port) as bystander:  # an established connection that must survive
        assert bystander.getTaskStatus(KNOWN).id == KNOWN
        with connect(srv.port) as sock:
            try:
                sock.sendall(payload)
            except (BrokenPipeError, ConnectionResetError):
                pass  # already thrown out
            if client_closes:
                sock.shutdown(socket.SHUT_WR)
            elapsed = wait_closed_by_server(sock, MESSAGE_TIMEOUT + 2)
        if at_once:
            assert elapsed < 1.0, f"closed after {elapsed:.2f} s, not at once"
        else:
            assert MESSAGE_TIMEOUT - 0.3 <= elapsed <= MESSAGE_TIMEOUT + 1.0
        assert bystander.getTaskStatus(KNOWN).id == KNOWN
        assert_serves(srv.port)
        assert_serves(srv.port, framed=True)
        wait_for(lambda: srv.server.connection_count == 1, 2.0, "the hostile connection to be dropped")
    assert rss() - rss_before < 50 * MB


@pytest.mark.timeout(20)
def test_decode_error_is_logged_as_warning(hostile_server, caplog):
    with connect(hostile_server.port) as sock:
        sock.sendall(HOSTILE["framed-string-1GB"][0])
        wait_closed_by_server(sock, 2.0)
    wait_for(lambda: any(r.name == "tserver.transport" and r.levelname == "WARNING" for r in caplog.records),
             2.0, "a warning")
    assert_serves(hostile_server.port)


@pytest.mark.timeout(20)
def test_random_frames_never_hurt_the_server(hostile_server):
    rng = random.Random(7)
    rss_before = rss()
    for _ in range(20):
        body = rng.randbytes(rng.randrange(1, 300))
        with connect(hostile_server.port) as sock:
            sock.sendall(frame(body))
            sock.settimeout(MESSAGE_TIMEOUT + 2)
            try:  # a reply (e.g. an unknown-method error) or a close are both fine; a hang is not
                sock.recv(65536)
            except ConnectionResetError:
                pass
    assert_serves(hostile_server.port, framed=True)
    assert rss() - rss_before < 50 * MB


# --------------------------------------------------------------------------------------------------
# Connections: idle ones cost no thread, limits, graceful close
# --------------------------------------------------------------------------------------------------

def _raise_nofile(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
def test_thousand_idle_connections_cost_no_thread_and_time_out(make_server, loop):
    _raise_nofile(4096)
    idle_timeout = 2.5
    workers = 4
    base_threads = threads()  # this thread and the servers of other tests
    srv = make_server(delay=0.0, workers=workers, idle_timeout=idle_timeout, loop=loop)
    idle: list[socket.socket] = []
    try:
        t_first = time.monotonic()
        for _ in range(1000):
            idle.append(connect(srv.port))
        wait_for(lambda: srv.server.connection_count == 1000, 5.0, "1,000 accepted connections")
        assert time.monotonic() - t_first < idle_timeout - 0.5, "connecting took too long for this test"

        assert_serves(srv.port)
        assert_serves(srv.port, framed=True)
        # the server's loop thread + at most `workers` pool threads
        assert threads() - base_threads <= workers + 1, f"{threads()} threads with 1,000 idle connections"

        sel = selectors.DefaultSelector()
        for s in idle:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        open_socks = set(idle)
        deadline = time.monotonic() + idle_timeout + 5
        while open_socks and time.monotonic() < deadline:
            for key, _ in sel.select(timeout=0.2):
                try:
                    data = key.fileobj.recv(16)
                except ConnectionResetError:
                    data = b""
                assert data == b""
                assert time.monotonic() - t_first >= idle_timeout * 0.9, "closed before idle_timeout"
                sel.unregister(key.fileobj)
                open_socks.discard(key.fileobj)
        sel.close()
        assert not open_socks, f"{len(open_socks)} idle connections still open"
        wait_for(lambda: srv.server.connection_count == 0, 2.0, "the server to forget them")
    finally:
        for s in idle:
            s.close()


@pytest.mark.timeout(20)
def test_max_connections(make_server):
    srv = make_server(delay=0.0, max_connections=5)
    ctxs = [stock_client(srv.port) for _ in range(5)]
    clients = [c.__enter__() for c in ctxs]
    try:
        for c in clients:  # all five accepted and served
            assert c.getTaskStatus(KNOWN).id == KNOWN
        with connect(srv.port) as extra:
            assert wait_closed_by_server(extra, 2.0) < 1.0
        assert srv.server.connection_count == 5
        for c in clients:  # the five are unaffected
            assert c.getTaskStatus(KNOWN).id == KNOWN
        ctxs.pop().__exit__(None, None, None)
        clients.pop()
        wait_for(lambda: srv.server.connection_count == 4, 2.0, "a slot to free up")
        assert_serves(srv.port)
    finally:
        for c in ctxs:
            c.__exit__(None, None, None)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("loop", LOOPS)
def test_close_is_graceful(make_server, loop):
    before = pool_threads()  # of servers of other tests
    srv = make_server(delay=0.6, workers=2, loop=loop)
    result: dict[str, object] = {}

    def slow_call():
        try:
            with stock_client(srv.port, framed=True) as client:
                result["host"] = client.getHostStatus().hostname
        except Exception as exc:  # reported below
            result["error"] = exc

    with connect(srv.port) as idle:
        caller = threading.Thread(target=slow_call)
        caller.start()
        wait_for(lambda: srv.handler.active == 1, 2.0, "the slow call to start")
        t0 = time.monotonic()
        srv.close()
        took = time.monotonic() - t0
        caller.join(5)
        assert result == {"host": "h"}  # the in-flight call was answered
        assert 0.3 < took < 3.0  # close() waited for it, and no longer than needed
        assert wait_closed_by_server(idle, 1.0) < 1.0  # idle connections were closed
    assert srv.server.connection_count == 0
    with pytest.raises(OSError):  # no longer accepting
        socket.create_connection(("127.0.0.1", srv.port), timeout=1.0).close()
    assert not pool_threads() - before, "pool threads left"


_RUN_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from RPC import RPCcelery
    from RPC.ttypes import BadTask
    from tserver.transport import ServerLimits, run

    class H(RPCcelery.Iface):
        def getTaskStatus(self, uuid):
            raise BadTask(message="unknown " + uuid)

    def ready(port):
        print("ready", port, type(asyncio.get_running_loop()).__module__, flush=True)

    run(RPCcelery.Processor(H()), "127.0.0.1", 0, ServerLimits(workers=2), port_file=sys.argv[1], ready=ready)
    print("exited cleanly", flush=True)
""")


@pytest.mark.timeout(30)
def test_run_writes_port_file_and_stops_on_sigterm(tmp_path):
    port_file = tmp_path / "tserver.port"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(ROOT / "gen-py")]))
    proc = subprocess.Popen([sys.executable, "-c", _RUN_SCRIPT, str(port_file)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: port_file.exists() or proc.poll() is not None, 15.0, "the port file")
        assert proc.poll() is None, proc.stderr.read()
        port = int(port_file.read_text())
        with stock_client(port) as client:
            with pytest.raises(BadTask) as bt:
                client.getTaskStatus("x")
            assert bt.value.message == "unknown x"
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"ready {port} ")
    try:
        import uvloop  # noqa: F401
    except ImportError:
        pass
    else:
        assert lines[0].split()[2] == "uvloop"
    assert lines[-1] == "exited cleanly"
    assert not list(tmp_path.glob(".port-*")), "temporary port file left behind"
