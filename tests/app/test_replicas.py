"""ThriftReplicas against real Thrift servers (tserver.runtime with an in-test handler) on loopback:
rotation, a replica that refuses taken out and probed back, what is retried elsewhere and what not."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator

import pytest

from app.errors import ComputeDropped, ComputeUnavailable
from app.replicas import ThriftReplicas
from testing.waiting import free_port
from tests.tserver.runtime_harness import KNOWN, Handler, ServerThread
from tserver.runtime import ServerLimits


class Counting(Handler):
    """Counts the calls each server answers."""

    def __init__(self) -> None:
        super().__init__(delay=0.0)
        self.status_calls = 0

    def getTaskStatus(self, uuid):
        self.status_calls += 1
        return super().getTaskStatus(uuid)


@pytest.fixture
def servers() -> Iterator[list[ServerThread]]:
    started = [ServerThread(ServerLimits(workers=2), handler=Counting()).start() for _ in range(2)]
    yield started
    for srv in started:
        srv.close()


def replicas(ports: list[int]) -> ThriftReplicas:
    return ThriftReplicas([("127.0.0.1", p) for p in ports], size=4, timeout=3.0, connect_timeout=0.5)


def test_calls_go_round_robin(servers: list[ServerThread]) -> None:
    async def scenario() -> None:
        client = replicas([s.port for s in servers])
        try:
            for _ in range(10):
                assert (await client.call("getTaskStatus", KNOWN)).id == KNOWN
        finally:
            await client.close()

    asyncio.run(scenario())
    assert [s.handler.status_calls for s in servers] == [5, 5]


def test_a_replica_that_refuses_is_taken_out_and_probed_back(servers: list[ServerThread]) -> None:
    dead = free_port()

    async def scenario() -> tuple[list[str], list[str]]:
        client = replicas([dead, servers[0].port])
        try:
            for _ in range(6):  # nothing listens on `dead`: every call still answers
                assert (await client.call("getTaskStatus", KNOWN)).id == KNOWN
            out = client.in_rotation
            # Something starts listening there: the probe puts it back.
            listener = socket.create_server(("127.0.0.1", dead))
            try:
                for _ in range(40):
                    if len(client.in_rotation) == 2:
                        break
                    await asyncio.sleep(0.1)
            finally:
                listener.close()
            return out, client.in_rotation
        finally:
            await client.close()

    out, back = asyncio.run(scenario())
    assert out == [f"127.0.0.1:{servers[0].port}"]
    assert back == [f"127.0.0.1:{dead}", f"127.0.0.1:{servers[0].port}"]
    assert servers[0].handler.status_calls == 6


def test_a_start_goes_elsewhere_only_when_it_was_certainly_not_sent(servers: list[ServerThread]) -> None:
    async def refused_then_served() -> str:
        client = replicas([free_port(), servers[0].port])
        try:
            return str((await client.call("queueCalcPi", 3, idempotent=False)).id)
        finally:
            await client.close()

    assert asyncio.run(refused_then_served()) == "queued-3"

    # A server that takes the request and drops the connection: the start may have been received.
    dropper = socket.create_server(("127.0.0.1", 0))
    dropper.setblocking(False)

    async def dropped() -> None:
        loop = asyncio.get_running_loop()

        async def drop_all() -> None:
            while True:
                conn, _ = await loop.sock_accept(dropper)
                await loop.sock_recv(conn, 65536)
                conn.close()

        dropping = asyncio.create_task(drop_all())
        client = replicas([dropper.getsockname()[1], servers[1].port])
        try:
            with pytest.raises(ComputeDropped):
                await client.call("queueCalcPi", 3, idempotent=False)
            # A read dropped the same way is repeated on the other replica.
            assert (await client.call("getTaskStatus", KNOWN)).id == KNOWN
        finally:
            dropping.cancel()
            await client.close()

    try:
        asyncio.run(dropped())
    finally:
        dropper.close()
    assert servers[1].handler.status_calls == 1


def test_all_replicas_down_is_unavailable_quickly() -> None:
    async def scenario() -> None:
        client = replicas([free_port(), free_port()])
        try:
            with pytest.raises(ComputeUnavailable, match="unreachable"):
                await client.call("getTaskStatus", KNOWN)
        finally:
            await client.close()

    asyncio.run(scenario())
