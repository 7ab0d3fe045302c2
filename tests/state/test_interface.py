"""The state store's interface, defined by one suite run against both backends (files, and a real Redis)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from state.errors import StorageError, UnknownTask
from state.records import FAILURE, PROGRESS, REVOKED, SUCCESS, WAITING, TaskState
from tests.state.conftest import Backend

ID = "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"


def task(i: int, status: str = WAITING, stoptime: str | None = None) -> TaskState:
    queued = datetime(2026, 11, 28, 3, tzinfo=UTC) + timedelta(seconds=i)
    return TaskState(
        id=f"00000000-0000-4000-8000-{i:012d}",
        status=status,
        decimal=3,
        pushqtime=queued.isoformat(),
        stoptime=stoptime,
    )


def test_a_write_reads_back_from_both_faces(backend: Backend) -> None:
    state = TaskState(
        id=ID,
        status=SUCCESS,
        decimal=5,
        pushqtime="2026-11-28T03:00:00+00:00",
        progress=100.0,
        result=3.14159,
        digits="3.14159",
        terms=42,
        attempts=1,
        stoptime="2026-11-28T03:00:02+00:00",
    )
    backend.store.write(state)
    assert backend.store.read(ID) == state
    assert backend.on_catalog(lambda c: c.read(ID)) == state


def test_a_write_through_the_catalog_is_seen_by_the_worker(backend: Backend) -> None:
    backend.on_catalog(lambda c: c.write(task(1)))
    assert backend.store.read(task(1).id) == task(1)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../etc/passwd",
        "..",
        ID.upper(),
        ID + "0",
        "*",
        "pi:tasks",
        "x" * 100_000,
        "\x00" * 36,
        ID.replace("-", ":"),
        5,
        None,
    ],
)
def test_anything_but_a_canonical_uuid_is_unknown(backend: Backend, bad: object) -> None:
    with pytest.raises(UnknownTask):
        backend.store.read(bad)  # type: ignore[arg-type] - wrong types on purpose: the store must refuse them
    with pytest.raises(UnknownTask):
        backend.store.cancel_requested(bad)  # type: ignore[arg-type] - wrong types on purpose: the store must refuse them
    with pytest.raises(UnknownTask):
        backend.on_catalog(lambda c: c.read(bad))


def test_a_missing_task_is_unknown(backend: Backend) -> None:
    with pytest.raises(UnknownTask):
        backend.store.read(ID)


def test_pages_are_newest_first_with_totals_and_filters(backend: Backend) -> None:
    for i in range(30):
        backend.on_catalog(
            lambda c, i=i: c.write(
                task(i, SUCCESS if i % 3 == 0 else WAITING, "2026-11-28T04:00:00+00:00" if i % 3 == 0 else None)
            )
        )

    async def pages(c):
        return (await c.page(0, 5), await c.page(28, 5), await c.page(2, 3, SUCCESS), await c.page(0, 100, FAILURE))

    first, last, done, failed = backend.on_catalog(pages)
    assert [s.id for s in first[0]] == [task(i).id for i in (29, 28, 27, 26, 25)] and first[1] == 30
    assert [s.id for s in last[0]] == [task(1).id, task(0).id]
    assert [s.id for s in done[0]] == [task(i).id for i in (21, 18, 15)] and done[1] == 10
    assert failed == ([], 0)


def test_a_status_change_moves_a_task_between_filtered_pages(backend: Backend) -> None:
    backend.on_catalog(lambda c: c.write(task(1)))
    backend.store.write(task(1).evolve(status=PROGRESS, heartbeat="2026-11-28T03:00:05+00:00"))
    # Redis changes the listings with the document; the files backend re-reads a task that has not
    # ended at most every 0.2 s, and at every housekeeping round.
    time.sleep(0.25)

    async def look(c):
        await c.housekeep()
        return (await c.page(0, 10, WAITING))[1], [s.status for s in (await c.page(0, 10, PROGRESS))[0]]

    assert backend.on_catalog(look) == (0, [PROGRESS])


def test_cancellation_requests(backend: Backend) -> None:
    backend.on_catalog(lambda c: c.write(task(1)))
    assert backend.store.cancel_requested(task(1).id) is False
    backend.on_catalog(lambda c: c.request_cancel(task(1).id))
    assert backend.store.cancel_requested(task(1).id) is True
    backend.store.clear_cancel(task(1).id)
    assert backend.store.cancel_requested(task(1).id) is False


def test_delete_state_keeps_the_cancellation_request(backend: Backend) -> None:
    async def start_refused(c):
        await c.write(task(1))
        await c.request_cancel(task(1).id)
        await c.delete_state(task(1).id)
        return await c.page(0, 10)

    assert backend.on_catalog(start_refused) == ([], 0)
    with pytest.raises(UnknownTask):
        backend.store.read(task(1).id)
    assert backend.store.cancel_requested(task(1).id)


def test_retention_removes_only_old_ended_tasks(backend: Backend) -> None:
    old = task(1, SUCCESS, "2020-01-01T00:00:00+00:00")
    recent = task(2, REVOKED, datetime.now(UTC).isoformat())
    running = task(3, PROGRESS)
    for state in (old, recent, running):
        backend.on_catalog(lambda c, s=state: c.write(s))

    async def keep(c):
        await c.housekeep()
        return sorted(s.id for s in (await c.page(0, 10))[0])

    assert backend.on_catalog(keep, ttl=0) == sorted([old.id, recent.id, running.id]), "RESULT_TTL=0 keeps everything"
    assert backend.on_catalog(keep, ttl=3600) == sorted([recent.id, running.id])
    with pytest.raises(UnknownTask):
        backend.store.read(old.id)


def test_storage_trouble_is_a_storage_error(backend: Backend, tmp_path) -> None:
    if backend.name == "files":
        blocker = tmp_path / "file"
        blocker.write_text("")
        broken = backend.settings.model_copy(update={"STATE_DIR": blocker})
    else:  # nothing listens there
        broken = backend.settings.model_copy(update={"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_TIMEOUT": 1.0})
    from state.backends import open_store

    started = time.monotonic()
    with pytest.raises(StorageError):
        open_store(broken).write(task(1))
    assert time.monotonic() - started < 3


def test_concurrent_updates_lose_nothing(backend: Backend) -> None:
    # Eight writers (chunk workers finishing at once) each add 50 to a counter kept in the record.
    import threading

    from state.backends import open_store

    backend.store.write(task(1))

    def add(n: int) -> None:
        store = open_store(backend.settings)  # a writer of its own, as another process has
        for _ in range(n):
            store.update(task(1).id, lambda s: s.evolve(attempts=s.attempts + 1))

    threads = [threading.Thread(target=add, args=(50,)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.store.read(task(1).id).attempts == 400


def test_an_update_that_changes_nothing_writes_nothing(backend: Backend) -> None:
    backend.store.write(task(1))
    assert backend.store.update(task(1).id, lambda s: None) == task(1)
    with pytest.raises(UnknownTask):
        backend.store.update(task(2).id, lambda s: s)


def test_counts_by_status_follow_the_listings(backend: Backend) -> None:
    ended = "2026-11-28T04:00:00+00:00"
    for i in range(6):
        backend.on_catalog(lambda c, i=i: c.write(task(i, WAITING if i < 3 else SUCCESS, None if i < 3 else ended)))
    zero = dict.fromkeys((WAITING, PROGRESS, SUCCESS, FAILURE, REVOKED), 0)
    assert backend.on_catalog(lambda c: c.counts()) == zero | {WAITING: 3, SUCCESS: 3}

    async def change(c):  # a catalog: a task starts, a refused start is removed
        await c.write(task(0).evolve(status=PROGRESS))
        await c.delete_state(task(1).id)
        return await c.counts()

    assert backend.on_catalog(change) == zero | {WAITING: 1, PROGRESS: 1, SUCCESS: 3}


def test_counts_of_a_store_that_cannot_answer_are_a_storage_error(backend: Backend) -> None:
    if backend.name == "files":
        backend.catalog.index._broken = True  # type: ignore[attr-defined]  # as after a failed write
    else:  # nothing listens there
        backend.settings = backend.settings.model_copy(
            update={"REDIS_URL": "redis://127.0.0.1:1/0", "REDIS_TIMEOUT": 1.0}
        )
    with pytest.raises(StorageError):
        backend.on_catalog(lambda c: c.counts())
