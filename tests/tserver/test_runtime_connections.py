"""tserver.runtime's connections: idle ones cost no thread, limits, graceful close, the process."""

from __future__ import annotations

import os
import resource
import selectors
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from RPC.ttypes import BadTask
from tests.tserver.runtime_harness import (
    KNOWN,
    LOOPS,
    ROOT,
    assert_serves,
    connect,
    pool_threads,
    stock_client,
    threads,
    wait_closed_by_server,
    wait_for,
)

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
        except Exception as exc:  # noqa: BLE001 - any failure of the call is reported below
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
    with pytest.raises(ConnectionRefusedError):  # no longer accepting
        socket.create_connection(("127.0.0.1", srv.port), timeout=1.0).close()
    assert not pool_threads() - before, "pool threads left"


_RUN_SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from RPC import RPCcelery
    from RPC.ttypes import BadTask
    from tserver.runtime import ServerLimits, run

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
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUN_SCRIPT, str(port_file)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
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
        import uvloop  # noqa: F401 - imported to prove it is installed, not used
    except ImportError:
        pass
    else:
        assert lines[0].split()[2] == "uvloop"
    assert lines[-1] == "exited cleanly"
    assert not list(tmp_path.glob(".port-*")), "temporary port file left behind"
