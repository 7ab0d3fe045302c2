"""tserver.runtime with stock Thrift clients, framed and unframed: replies, order, concurrency, the pool."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from thrift.Thrift import TApplicationException, TMessageType

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask
from tests.tserver.runtime_harness import (
    KNOWN,
    LONG_ID,
    LOOPS,
    Handler,
    client_on,
    connect,
    encode_call,
    frame,
    pool_threads,
    status_call,
    stock_client,
)

# --------------------------------------------------------------------------------------------------
# Stock clients, framed and unframed
# --------------------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("loop", LOOPS)
@pytest.mark.parametrize("framed", [False, True], ids=["unframed", "framed"])
def test_coroutine_methods_run_on_the_loop_with_the_generated_replies(make_server, framed, loop):
    srv = make_server(delay=0.2, loop=loop, workers=1)
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
def test_coroutine_methods_run_on_the_loop_and_plain_ones_in_the_pool(make_server, framed, loop):
    # Where a call runs is the handler method's own declaration: `async def` on the loop, `def` in the pool.
    threads: dict[str, str] = {}

    class Declared(Handler):
        async def getTaskStatus(self, uuid):
            threads["getTaskStatus"] = threading.current_thread().name
            return Handler.getTaskStatus(self, uuid)

        def getHostStatus(self):
            threads["getHostStatus"] = threading.current_thread().name
            return Handler.getHostStatus(self)

    srv = make_server(delay=0.0, loop=loop, handler=Declared(0.0))
    with stock_client(srv.port, framed=framed) as client:
        assert client.getTaskStatus(KNOWN).id == KNOWN
        with pytest.raises(BadTask):  # IDL exceptions from a coroutine arrive typed as well
            client.getTaskStatus("nope")
        with pytest.raises(TApplicationException):
            client.listTasks()
        client.getHostStatus()
        for i in range(50):  # many calls in a row on one connection: answered in order
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
            sock.sendall(wire[i : i + 1])
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
