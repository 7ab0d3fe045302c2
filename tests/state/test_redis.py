"""The Redis backend's own cases, on the machine's real Redis (a key prefix of its own): what is in
Redis under our prefix that is not ours, and that every change keeps the document and its listings
in step."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from state.errors import UnknownTask
from state.records import FAILURE, PROGRESS, SUCCESS, WAITING, TaskState
from tests.state.conftest import Backend, redis_client

ID = "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"


@pytest.fixture
def backend(redis_backend: Backend) -> Backend:
    return redis_backend


def waiting(task_id: str = ID) -> TaskState:
    return TaskState(id=task_id, status=WAITING, decimal=5, pushqtime="2026-11-28T03:00:00+00:00")


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"id": "x"}',
        b"\xff\xfe",
        b"x" * 70_000,
        b'{"id":"5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c","status":"DONE","decimal":5,'
        b'"pushqtime":"2026-11-28T03:00:00+00:00"}',
    ],
)
def test_a_document_that_is_not_ours_reads_as_failure_with_a_reason(backend: Backend, content: bytes) -> None:
    client = redis_client()
    client.set(f"{backend.settings.REDIS_KEY_PREFIX}task:{ID}", content)
    for state in (backend.store.read(ID), backend.on_catalog(lambda c: c.read(ID))):
        assert state.status == FAILURE and "corrupt" in (state.error or "")


def test_a_key_of_another_type_reads_as_failure(backend: Backend) -> None:
    client = redis_client()
    client.hset(f"{backend.settings.REDIS_KEY_PREFIX}task:{ID}", "status", "SUCCESS")
    assert backend.store.read(ID).status == FAILURE
    assert backend.on_catalog(lambda c: c.read(ID)).status == FAILURE


def test_a_listing_skips_and_drops_what_is_not_a_task(backend: Backend) -> None:
    prefix = backend.settings.REDIS_KEY_PREFIX
    client = redis_client()
    backend.on_catalog(lambda c: c.write(waiting()))
    gone = "00000000-0000-4000-8000-000000000001"
    client.zadd(f"{prefix}tasks", {"../../etc/passwd": 9e9, "*": 9e9, gone: 9e9})  # planted by hand
    page, _ = backend.on_catalog(lambda c: c.page(0, 10))
    assert [s.id for s in page] == [ID]
    assert client.zrange(f"{prefix}tasks", 0, -1) == [ID.encode()], "the planted members are dropped"
    assert not any(b"etc" in k for k in client.keys(f"{prefix}*")), "no key is made from a member"


def test_every_write_moves_the_task_between_the_sets_at_once(backend: Backend) -> None:
    prefix = backend.settings.REDIS_KEY_PREFIX
    client = redis_client()

    def where() -> dict[str, list[bytes]]:
        return {
            key.decode().removeprefix(prefix): client.zrange(key, 0, -1)
            for key in client.keys(f"{prefix}*")
            if client.type(key) == b"zset"
        }

    backend.store.write(waiting())
    assert where() == {"tasks": [ID.encode()], "status:WAITING": [ID.encode()]}
    backend.store.write(waiting().evolve(status=PROGRESS))
    assert where() == {"tasks": [ID.encode()], "status:PROGRESS": [ID.encode()]}
    backend.store.write(waiting().evolve(status=SUCCESS, stoptime="2026-11-28T03:00:09+00:00"))
    assert where() == {"tasks": [ID.encode()], "status:SUCCESS": [ID.encode()], "ended": [ID.encode()]}
    assert client.zscore(f"{prefix}ended", ID) == pytest.approx(1795834809.0)


def test_cancellation_requests_expire_by_themselves(backend: Backend) -> None:
    backend.on_catalog(lambda c: c.request_cancel(ID))
    ttl = redis_client().ttl(f"{backend.settings.REDIS_KEY_PREFIX}cancel:{ID}")
    assert 23 * 3600 < ttl <= 24 * 3600
    with pytest.raises(UnknownTask):
        backend.store.read(ID)


def test_reads_asked_for_together_go_to_redis_as_one_command(backend: Backend) -> None:
    """Concurrent reads (several Thrift requests in one pass of the loop) share one MGET; an unknown
    id among them is still unknown, a key of another type still corrupt, the others still right."""
    ids = [f"5b2f3c1e-8a4d-4f7e-9c0b-{i:012x}" for i in range(20)]
    for task_id in ids:
        backend.on_catalog(lambda c, t=task_id: c.write(waiting(t)))
    unknown, other_type = "00000000-0000-4000-8000-000000000002", "00000000-0000-4000-8000-000000000003"
    redis_client().hset(f"{backend.settings.REDIS_KEY_PREFIX}task:{other_type}", "status", "SUCCESS")

    async def read_all(catalog: Any) -> list[object]:
        sent: list[int] = []
        mget = catalog.client.mget

        async def counting(keys: list[str]) -> object:
            sent.append(len(keys))
            return await mget(keys)

        catalog.client.mget = counting  # counts the commands sent; Redis itself answers them
        try:
            got = await asyncio.gather(
                *(catalog.read(t) for t in [*ids, ids[0], unknown, other_type]), return_exceptions=True
            )
        finally:
            del catalog.client.mget
        assert sent == [22], "one MGET for the 22 distinct ids (20 tasks, an unknown one, another type)"
        return got

    got = backend.on_catalog(read_all)
    assert [s.id for s in got[:21]] == [*ids, ids[0]]
    assert all(s.status == WAITING for s in got[:21])
    assert isinstance(got[21], UnknownTask)
    assert got[22].status == FAILURE and "corrupt" in (got[22].error or "")
