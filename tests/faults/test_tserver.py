"""The Thrift server (`python -m tserver` under supervisord): killed, and fed hostile bytes on its port.

Killed: the gateway answers 503 (never 500) within a second, supervisord restarts the server, and the
gateway reconnects by itself. Hostile input (random, truncated, oversized frames, a thousand idle
connections, a trickling client): every such connection is closed or ignored, the server neither
dies nor grows, and a real call still answers within a second.
"""

from __future__ import annotations

import random
import resource
import socket
import struct
import time
from collections.abc import Iterator

import httpx
import psutil
import pytest
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from RPC import RPCcelery
from testing.waiting import wait_for
from tests.faults.conftest import (
    FaultStack,
    program_pid,
    program_state,
    rss_mb,
    running_stack,
    start_task,
    wait_ended,
    wait_restarted,
)

pytestmark = pytest.mark.timeout(180)

IDLE_TIMEOUT = 6.0
IDLE_CONNECTIONS = 1000


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(tmp_path_factory.mktemp("tserver"), broker_url, TSERVER_IDLE_TIMEOUT=str(IDLE_TIMEOUT)) as s:
        yield s


def real_call(stack: FaultStack, framed: bool = True) -> float:
    """One getHostStatus through a stock client, with a 1 s socket timeout; seconds it took."""
    sock = TSocket.TSocket("127.0.0.1", stack.tserver_port)
    sock.setTimeout(1000)
    transport = TTransport.TFramedTransport(sock) if framed else TTransport.TBufferedTransport(sock)
    started = time.monotonic()
    transport.open()
    try:
        status = RPCcelery.Client(TBinaryProtocol.TBinaryProtocol(transport)).getHostStatus()
        assert status.cpu.count >= 1
    finally:
        transport.close()
    return time.monotonic() - started


def connect(stack: FaultStack, timeout: float = 3.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", stack.tserver_port), timeout=timeout)
    return sock


def closed_by_server(sock: socket.socket, within: float) -> bool:
    """True if the server closes (EOF or reset) within `within` s; any reply bytes are read and skipped."""
    sock.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not sock.recv(65536):
                return True
        return False
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def call_frame(name: bytes, args: bytes = b"\x00") -> bytes:
    """A strict binary CALL message (unframed): version, name, seqid, then the args struct."""
    return struct.pack("!iI", -2147418111, len(name)) + name + struct.pack("!i", 1) + args


# -- the server killed ---------------------------------------------------------------------------------


def test_killed_tserver_gateway_answers_503_then_reconnects_by_itself(stack: FaultStack) -> None:
    task_id = start_task(stack, 2)
    wait_ended(stack, task_id)
    gateway = stack.procs["gateway"]
    with httpx.Client(base_url=stack.api, timeout=10) as client:
        assert client.get(f"/task/{task_id}").status_code == 200  # the gateway's pool holds a connection
        old = program_pid(stack, "tserver")
        psutil.Process(old).kill()
        killed_at = time.monotonic()
        seen = []
        # A task the gateway has not seen needs the Thrift server; an ended task it has just read is
        # served from its memory (an ended task never changes), outage or not.
        unseen = "00000000-0000-4000-8000-000000000000"
        for method, path in (("GET", f"/task/{unseen}"), ("POST", "/calcpi/2"), ("GET", "/"), ("GET", "/alltasks")):
            started = time.monotonic()
            r = client.request(method, path)
            seen.append((method, path, r.status_code, time.monotonic() - started))
            assert r.status_code == 503, (method, path, r.status_code, r.text)
            assert r.json()["detail"].startswith("the compute service"), r.text
            assert r.headers["Retry-After"] == "5"
            assert time.monotonic() - started < 1
        assert client.get(f"/task/{task_id}").json()["status"] == "SUCCESS"
        print("tserver killed: " + ", ".join(f"{m} {p.split('/')[1]} {s} in {t * 1000:.0f} ms" for m, p, s, t in seen))

        _new, took = wait_restarted(stack, "tserver", old)
        back = wait_for(
            lambda: client.get("/").status_code == 200 and time.monotonic(),
            30,
            "the gateway to answer 200 again",
            interval=0.05,
        )
        print(
            f"supervisord restarted tserver after {took:.2f} s; the gateway answered 200 again "
            f"{back - killed_at:.2f} s after the kill"
        )
        assert wait_for(lambda: program_state(stack, "tserver") == "RUNNING", 10, "tserver RUNNING")
        created = client.post("/calcpi/3")
        assert created.status_code == 202, created.text
    assert gateway.poll() is None and stack.procs["gateway"] is gateway, "the gateway was restarted"
    assert wait_ended(stack, created.json()["id"])["digits"] == "3.142"


# -- hostile bytes on the port ---------------------------------------------------------------------------


def hostile_payloads() -> list[tuple[str, bytes]]:
    rng = random.Random(20261128)
    cases: list[tuple[str, bytes]] = []
    for i in range(60):
        cases.append((f"random {i}", rng.randbytes(rng.randint(1, 4096))))
    for i in range(60):  # framed: a plausible length, garbage inside
        body = rng.randbytes(rng.randint(1, 2048))
        cases.append((f"framed garbage {i}", struct.pack("!i", len(body)) + body))
    for i in range(60):  # unframed: a valid version word, garbage after it
        cases.append((f"unframed garbage {i}", b"\x80\x01\x00\x01" + rng.randbytes(rng.randint(0, 2048))))
    for i in range(30):  # a real call cut short anywhere
        full = call_frame(b"getTaskStatus", b"\x0b\x00\x01" + struct.pack("!i", 36) + b"a" * 36 + b"\x00")
        cut = full[: rng.randint(1, len(full) - 1)]
        cases.append((f"truncated unframed {i}", cut))
        cases.append((f"truncated framed {i}", struct.pack("!i", len(full)) + cut))
    cases += [
        ("2 GB frame claim", struct.pack("!I", 0x7FFFFFFF) + b"x" * 100),
        ("negative frame claim", struct.pack("!i", -1) + b"x" * 100),
        ("16 MB frame claim", struct.pack("!i", 0x00FFFFFF) + b"x" * 100),
        ("2 GB method name", struct.pack("!iI", -2147418111, 0x7FFFFFFF) + b"x" * 100),
        (
            "2 GB string argument",
            call_frame(b"getTaskStatus", b"\x0b\x00\x01" + struct.pack("!I", 0x7FFFFFFF)) + b"y" * 100,
        ),
        ("2 G list elements", call_frame(b"getTaskStatus", b"\x0f\x00\x01\x0b" + struct.pack("!I", 0x7FFFFFFF))),
        ("deep nesting", call_frame(b"getTaskStatus", b"\x0c\x00\x01" * 5000)),
        ("unknown method", call_frame(b"rm -rf /", b"\x00")),
        ("old non-strict message", struct.pack("!i", 13) + b"getTaskStatus\x01" + b"\x00" * 8),
        ("http request", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
    ]
    return cases


def test_hostile_frames_are_dropped_and_the_server_stays_well(stack: FaultStack) -> None:
    pid = program_pid(stack, "tserver")
    rss_before = rss_mb(pid)
    slowest_close = 0.0
    lingering = []
    for label, payload in hostile_payloads():
        with connect(stack) as sock:
            try:
                sock.sendall(payload)
                sock.shutdown(socket.SHUT_WR)  # the client is done: a partial message can never complete
            except (BrokenPipeError, ConnectionResetError):
                continue  # closed while we were still sending: fine
            started = time.monotonic()
            if not closed_by_server(sock, 2.0):
                lingering.append(label)
            slowest_close = max(slowest_close, time.monotonic() - started)
    assert not lingering, f"the server kept these connections open after the client's EOF: {lingering}"
    took = real_call(stack)
    assert took < 1
    assert program_pid(stack, "tserver") == pid, "the Thrift server died (supervisord restarted it)"
    grown = rss_mb(pid) - rss_before
    print(
        f"{len(hostile_payloads())} hostile connections: each closed within {slowest_close * 1000:.0f} ms; "
        f"a real call then took {took * 1000:.0f} ms; RSS {rss_before:.0f} MB -> +{grown:.1f} MB"
    )
    assert grown < 30, f"the server grew by {grown:.0f} MB on hostile input"


def test_oversized_claims_are_refused_without_reading_on(stack: FaultStack) -> None:
    """A 2 GB length claim closes the connection at once: the server neither waits for nor allocates it."""
    pid = program_pid(stack, "tserver")
    rss_before = rss_mb(pid)
    for payload in (
        struct.pack("!I", 0x7FFFFFFF),
        struct.pack("!iI", -2147418111, 0x7FFFFFFF),
        call_frame(b"getTaskStatus", b"\x0b\x00\x01" + struct.pack("!I", 0x7FFFFFFF)),
    ):
        with connect(stack) as sock:
            sock.sendall(payload)  # the write side stays open: the claim alone must be enough
            started = time.monotonic()
            assert closed_by_server(sock, 1.0), f"{payload[:12]!r}: still open after 1 s"
            assert time.monotonic() - started < 1
    assert rss_mb(pid) - rss_before < 10


def test_idle_and_trickling_connections_cost_no_threads_and_are_closed(stack: FaultStack) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = IDLE_CONNECTIONS + 200
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    server = psutil.Process(program_pid(stack, "tserver"))
    limit = server.rlimit(psutil.RLIMIT_NOFILE)[0]
    assert limit >= need, f"the Thrift server may open only {limit} files: cannot hold {IDLE_CONNECTIONS} connections"
    real_call(stack)
    threads_before, rss_before = server.num_threads(), rss_mb(server.pid)
    socks: list[socket.socket] = []
    trickler = None
    try:
        for i in range(IDLE_CONNECTIONS):
            sock = connect(stack)
            if i % 4 == 1:
                sock.sendall(struct.pack("!i", 100) + b"half")  # a frame that never completes
            elif i % 4 == 2:
                sock.sendall(call_frame(b"getTaskStatus")[:9])  # an unframed message cut short
            socks.append(sock)
        opened = time.monotonic()
        trickler = connect(stack)
        message = call_frame(b"getTaskStatus", b"\x0b\x00\x01" + struct.pack("!i", 5000) + b"z" * 5000 + b"\x00")
        calls = [real_call(stack, framed=bool(i % 2)) for i in range(20)]
        assert max(calls) < 1, f"a real call took {max(calls):.2f} s beside {IDLE_CONNECTIONS} idle connections"
        wait_for(lambda: len(server.net_connections("tcp")) >= IDLE_CONNECTIONS, 5, "the server to accept them all")
        threads, rss = server.num_threads(), rss_mb(server.pid)
        print(
            f"{IDLE_CONNECTIONS} idle connections: real calls {min(calls) * 1000:.0f}..{max(calls) * 1000:.0f} ms; "
            f"tserver threads {threads_before} -> {threads}, RSS {rss_before:.0f} -> {rss:.0f} MB"
        )
        assert threads <= threads_before + 8, f"threads grew from {threads_before} to {threads} with idle connections"
        assert threads < 40
        assert rss - rss_before < 60, f"RSS grew by {rss - rss_before:.0f} MB for {IDLE_CONNECTIONS} connections"

        # A client that sends one byte at a time, never finishing, is cut off like an idle one.
        trickle_ok = True
        sent = 0
        while time.monotonic() - opened < IDLE_TIMEOUT + 4 and sent < len(message):
            try:
                trickler.sendall(message[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                trickle_ok = False
                break
            sent += 1
            time.sleep(0.05)
        assert not trickle_ok or closed_by_server(trickler, 1.0), "a trickling client was never cut off"
        closed_after = time.monotonic() - opened
        assert closed_after < IDLE_TIMEOUT + 5
        # By now the idle ones have timed out too.
        still_open = [s for s in socks[:50] if not closed_by_server(s, 0.05)]
        print(
            f"trickling client cut off {closed_after:.1f} s after it connected; idle ones closed "
            f"(TSERVER_IDLE_TIMEOUT={IDLE_TIMEOUT:g} s): {50 - len(still_open)}/50 sampled"
        )
        assert not still_open, "idle connections outlived TSERVER_IDLE_TIMEOUT"
    finally:
        for sock in socks:
            sock.close()
        if trickler is not None:
            trickler.close()
    wait_for(lambda: len(server.net_connections("tcp")) < 50, 10, "the server to drop the closed connections")
    assert real_call(stack) < 1
