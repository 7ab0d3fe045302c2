"""The harness of the runtime tests: an in-test RPCcelery handler, a ThriftServer on 127.0.0.1:0 in a
background thread (its own event loop), stock Thrift clients, and raw-wire helpers."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from thrift.protocol.TBinaryProtocol import TBinaryProtocol
from thrift.Thrift import TMessageType
from thrift.transport import TSocket, TTransport

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask, CpuStatus, DiskStatus, HostStatus, MemoryStatus, calcResult
from tserver.runtime import ServerLimits, ThriftServer

ROOT = Path(__file__).resolve().parents[2]
KNOWN = "0b7f3c1e-5d2a-4c8e-9f10-1234567890ab"
LONG_ID = "L" * 300  # a known id whose request is long enough to dribble byte by byte
MB = 1 << 20

try:
    import uvloop
except ImportError:  # pragma: no cover - uvloop is a dependency of uvicorn[standard]
    uvloop = None
# The server runs on uvloop in production (run() picks it) and must also work on plain asyncio.
LOOPS = [
    pytest.param("asyncio"),
    pytest.param("uvloop", marks=pytest.mark.skipif(uvloop is None, reason="uvloop not installed")),
]


# --------------------------------------------------------------------------------------------------
# In-test handler and server harness
# --------------------------------------------------------------------------------------------------


def _record(task_id: str) -> calcResult:
    return calcResult(
        id=task_id,
        status="SUCCESS",
        pushqtime="2024-01-01T00:00:00+00:00",
        result=3.14,
        decimal=2,
        progress=100.0,
        digits="3.14",
        terms=400,
    )


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
        return HostStatus(
            hostname="h",
            ip="127.0.0.1",
            cpu=CpuStatus(percent=1.0, count=2, load_average=[0.1, 0.2, 0.3]),
            memory=MemoryStatus(total=1, available=1, percent=0.0),
            disk=DiskStatus(path="/", total=1, free=1, percent=0.0),
        )


class ServerThread:
    """A ThriftServer on 127.0.0.1:0 with its own event loop in a background thread."""

    def __init__(
        self, limits: ServerLimits, delay: float = 0.3, loop: str = "asyncio", handler: Any = None, observer: Any = None
    ) -> None:
        self.handler = handler if handler is not None else Handler(delay)
        self.limits = limits
        self.server = ThriftServer(RPCcelery.Processor(self.handler), "127.0.0.1", 0, limits, observer=observer)
        self.loop = uvloop.new_event_loop() if loop == "uvloop" else asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="test-tserver-loop", daemon=True)
        self.stopped = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.server.start())
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread by start()
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


def make_server_fixture():
    servers: list[ServerThread] = []

    def make(
        delay: float = 0.3, loop: str = "asyncio", handler: Any = None, observer: Any = None, **limits
    ) -> ServerThread:
        limits.setdefault("workers", 4)
        srv = ServerThread(ServerLimits(**limits), delay, loop, handler, observer).start()
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
    except TimeoutError:
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
