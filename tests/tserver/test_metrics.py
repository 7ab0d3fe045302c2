"""The Thrift server's metrics in one process: exact counts of calls by method and outcome after a known set of
calls through a real server, bounded labels, each publish outcome counted (real RabbitMQ), and the tasks
gauge read from the store at scrape time, left out (not the scrape) when the store cannot answer."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from thrift.Thrift import TApplicationException

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask
from tests.tserver.publishing_harness import Relay, _delete_queue, _run
from tests.tserver.runtime_harness import (
    KNOWN,
    call_header,
    connect,
    encode_call,
    frame,
    status_call,
    stock_client,
    wait_closed_by_server,
    wait_for,
)
from tests.tserver.test_tracing import _Empty
from tests.tserver.theader_wire import header_client
from tserver import metrics as metrics_module
from tserver.errors import NotPublished, QueueUnavailable
from tserver.metrics import ServerMetrics
from tserver.observed import ObservedCalls
from tserver.publishing import PUBLISH_OUTCOMES, TaskPublisher
from tserver.server import idl_methods

METHODS = ("cancelTask", "getHostStatus", "getTaskStatus", "listTaskPage", "listTasks", "queueCalcPi", "startCalcPi")


def samples(metrics: ServerMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the text exposition, by name and sorted labels (as a scraper reads them)."""
    found = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return found


def calls(found: dict, method: str, outcome: str) -> float:
    return found["thrift_server_calls_total", (("method", method), ("outcome", outcome))]


def test_the_idl_methods_are_the_services() -> None:
    assert tuple(idl_methods()) == METHODS


@pytest.mark.timeout(30)
def test_exact_counts_after_a_known_set_of_calls(make_server) -> None:
    metrics = ServerMetrics(idl_methods())
    srv = make_server(delay=0.01, observer=ObservedCalls(metrics=metrics, tracer=None))
    with stock_client(srv.port, framed=True) as client:
        for _ in range(3):
            client.getTaskStatus(KNOWN)  # ok, a plain method (in the pool)
        for _ in range(2):
            with pytest.raises(BadTask):
                client.getTaskStatus("nope")  # idl_error
        client.queueCalcPi(3)  # ok, a coroutine method
        with pytest.raises(BadDecimal):
            client.queueCalcPi(99)  # idl_error
        with pytest.raises(TApplicationException):
            client.queueCalcPi(13)  # internal_error (an undeclared exception)
        with pytest.raises(TApplicationException):
            client.listTasks()  # internal_error, from the generated processor
    with header_client(srv.port) as client:
        client.getTaskStatus(KNOWN)  # ok, through THeader
    with connect(srv.port) as sock:  # methods the IDL does not have: "unknown", never their names
        for name in ("noSuchMethod", "x" * 200):
            sock.sendall(frame(encode_call(name, _Empty())))
            assert sock.recv(65536)  # an UNKNOWN_METHOD answer; the connection lives on
    for garbage in (
        b"\x42" * 10,
        frame(b"\x0f\xff\x00"),
        frame(status_call()[:-5]),
        frame(call_header("queueCalcPi") + b"\x08\x00"),
    ):  # the last two name their method
        with connect(srv.port) as sock:
            sock.sendall(garbage)
            wait_closed_by_server(sock, 2.0)

    wait_for(lambda: srv.server.connection_count == 0, 2.0, "the connections to close")
    found = samples(metrics)
    assert calls(found, "getTaskStatus", "ok") == 4
    assert calls(found, "getTaskStatus", "idl_error") == 2
    assert calls(found, "getTaskStatus", "decode_error") == 1
    assert calls(found, "queueCalcPi", "ok") == 1
    assert calls(found, "queueCalcPi", "idl_error") == 1
    assert calls(found, "queueCalcPi", "internal_error") == 1
    assert calls(found, "queueCalcPi", "decode_error") == 1
    assert calls(found, "listTasks", "internal_error") == 1
    assert calls(found, "unknown", "decode_error") == 4  # two unknown names, two undecodable frames
    assert sum(v for (name, _), v in found.items() if name == "thrift_server_calls_total") == 16
    counts = {
        dict(labels)["method"]: v
        for (name, labels), v in found.items()
        if name == "thrift_server_call_duration_seconds_count"
    }
    assert counts == dict.fromkeys(METHODS, 0) | {"getTaskStatus": 7, "queueCalcPi": 4, "listTasks": 1, "unknown": 2}
    # Bounded: every series exists from the start, and no client's method name ever became one.
    methods = {dict(labels).get("method") for (name, labels), _ in found.items() if name.startswith("thrift_server")}
    assert methods == {*METHODS, "unknown"}
    assert {dict(labels)["outcome"] for (name, labels), _ in found.items() if name == "thrift_server_calls_total"} == {
        "ok",
        "idl_error",
        "internal_error",
        "decode_error",
    }
    assert {dict(labels)["outcome"] for (name, labels), _ in found.items() if name == "publishes_total"} == set(
        PUBLISH_OUTCOMES
    )


@pytest.mark.timeout(30)
def test_the_histogram_measures_the_call(make_server) -> None:
    metrics = ServerMetrics(idl_methods())
    srv = make_server(delay=0.3, observer=ObservedCalls(metrics=metrics, tracer=None))
    with stock_client(srv.port, framed=True) as client:
        client.queueCalcPi(3)  # sleeps 0.3 s
    found = samples(metrics)
    total = found["thrift_server_call_duration_seconds_sum", (("method", "queueCalcPi"),)]
    assert 0.3 <= total < 1.0
    assert found["thrift_server_call_duration_seconds_bucket", (("le", "0.25"), ("method", "queueCalcPi"))] == 0
    assert found["thrift_server_call_duration_seconds_bucket", (("le", "0.5"), ("method", "queueCalcPi"))] == 1


@pytest.mark.timeout(60)
def test_every_publish_outcome_is_counted(broker_url: str, queue_name: str, relay: Relay) -> None:
    counted: list[str] = []

    async def scenario() -> None:
        publisher = TaskPublisher(relay.url, queue_name, timeout=0.5, retries=0, count=counted.append)
        try:
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)  # confirmed
            relay.hold()
            with pytest.raises(QueueUnavailable):
                await publisher.publish_calc_pi(str(uuid.uuid4()), 1)  # timeout
            await asyncio.sleep(0.7)  # the stuck connection is given up
            relay.release()
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)  # confirmed, on a new connection
            await asyncio.to_thread(_delete_queue, broker_url, queue_name)
            with pytest.raises(NotPublished):
                await publisher.publish_calc_pi(str(uuid.uuid4()), 1)  # returned
        finally:
            await publisher.close()
        with pytest.raises(NotPublished):
            await publisher.publish_calc_pi(str(uuid.uuid4()), 1)  # not_sent: the publisher is closed
        full = {"x-max-length": 0, "x-overflow": "reject-publish"}
        nacking = TaskPublisher(
            broker_url, f"{queue_name}-full", timeout=5, retries=0, queue_arguments=full, count=counted.append
        )
        try:
            with pytest.raises(QueueUnavailable, match="nack"):
                await nacking.publish_calc_pi(str(uuid.uuid4()), 1)
        finally:
            await nacking.close()
            await asyncio.to_thread(_delete_queue, broker_url, f"{queue_name}-full")

    _run(scenario())
    assert counted == ["confirmed", "timeout", "confirmed", "returned", "not_sent", "nack"]


@pytest.fixture
def loop_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """An event loop running in a thread of its own, as the server's runs beside the scrapes' thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_tasks_by_status_are_read_when_scraped(loop_thread: asyncio.AbstractEventLoop) -> None:
    metrics = ServerMetrics(idl_methods())
    asked: list[threading.Thread] = []

    async def counts() -> dict[str, int]:
        asked.append(threading.current_thread())
        return {"WAITING": 2, "PROGRESS": 1, "SUCCESS": 7, "FAILURE": 0, "REVOKED": 3}

    metrics.count_tasks(counts)
    assert not any(name == "tasks" for name, _ in samples(metrics))  # no loop yet: left out
    metrics.attach(loop_thread)
    found = samples(metrics)
    assert {dict(labels)["status"]: v for (name, labels), v in found.items() if name == "tasks"} == {
        "WAITING": 2,
        "PROGRESS": 1,
        "SUCCESS": 7,
        "FAILURE": 0,
        "REVOKED": 3,
    }
    assert len(asked) == 1 and asked[0] is not threading.current_thread()  # on the loop's thread


@pytest.mark.parametrize("trouble", ["raises", "hangs"])
def test_a_store_that_cannot_answer_leaves_the_gauge_out_not_the_scrape(
    loop_thread: asyncio.AbstractEventLoop,
    trouble: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from state.errors import StorageError

    monkeypatch.setattr(metrics_module, "COUNTS_TIMEOUT", 0.3)
    metrics = ServerMetrics(idl_methods())

    async def counts() -> dict[str, int]:
        if trouble == "raises":
            raise StorageError("the state store (Redis at 127.0.0.1:1) is unavailable")
        await asyncio.sleep(30)
        return {}

    metrics.count_tasks(counts)
    metrics.attach(loop_thread)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="tserver.metrics"):
        found = samples(metrics)
    assert time.monotonic() - started < 2.0
    assert not any(name == "tasks" for name, _ in found)
    assert calls(found, "getTaskStatus", "ok") == 0  # the rest of the scrape is there
    (record,) = [r for r in caplog.records if r.name == "tserver.metrics"]
    assert "tasks by status left out" in record.getMessage()
    assert ("Redis at 127.0.0.1:1" if trouble == "raises" else "no answer within 0.3 s") in record.getMessage()


def test_a_scrape_on_the_servers_own_loop_does_not_wait_for_itself(caplog: pytest.LogCaptureFixture) -> None:
    metrics = ServerMetrics(idl_methods())

    async def counts() -> dict[str, int]:
        return {}

    async def scrape() -> dict:
        metrics.attach(asyncio.get_running_loop())
        return samples(metrics)

    metrics.count_tasks(counts)
    found = asyncio.run(asyncio.wait_for(scrape(), 5))
    assert not any(name == "tasks" for name, _ in found)


def test_rpc_celery_processor_names_match() -> None:
    assert set(RPCcelery.Processor(None)._processMap) == set(METHODS)
