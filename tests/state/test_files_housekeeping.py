"""The files backend's housekeeping round: retention, orphan cancellation requests, expiry in batches."""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from state.files import FileStore
from state.files_housekeeping import sweep
from state.files_index import TaskIndex
from state.records import PROGRESS, SUCCESS, WAITING, TaskState


def task_ids(store: FileStore) -> list[str]:
    return list(store.iter_task_ids())


def task(i: int, status: str = WAITING, stoptime: str | None = None) -> TaskState:
    queued = datetime(2026, 11, 28, 3, tzinfo=UTC) + timedelta(seconds=i)
    return TaskState(
        id=f"00000000-0000-4000-8000-{i:012d}",
        status=status,
        decimal=3,
        pushqtime=queued.isoformat(),
        stoptime=stoptime,
    )


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path)


def test_retention_removes_only_old_ended_tasks(store: FileStore) -> None:
    old = task(1, SUCCESS, "2020-01-01T00:00:00+00:00")
    recent = task(2, SUCCESS, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    running = task(3, PROGRESS)
    for state in (old, recent, running):
        store.write(state)
    store.request_cancel(old.id)
    index = TaskIndex(store)
    assert sweep(index, 3600) == 1
    assert sorted(task_ids(store)) == [recent.id, running.id]
    assert not store.cancel_requested(old.id)
    assert sweep(index, 0) == 0, "RESULT_TTL=0 keeps everything"


def test_housekeeper_removes_old_orphan_cancellation_requests(store: FileStore) -> None:
    import os

    store.request_cancel(task(1).id)  # its task file is gone: a message that never arrived
    store.request_cancel(task(2).id)  # recent: kept for a late message
    store.write(task(3))
    store.request_cancel(task(3).id)  # its task still exists: kept
    day_ago = time.time() - 2 * 24 * 3600
    for i in (1, 3):
        os.utime(store.folder / f".cancel-{task(i).id}", (day_ago, day_ago))
    sweep(TaskIndex(store), 0)
    assert not store.cancel_requested(task(1).id)
    assert store.cancel_requested(task(2).id) and store.cancel_requested(task(3).id)


def test_expiry_runs_in_batches_until_done(store: FileStore) -> None:
    from state import files_housekeeping as maintenance

    index = TaskIndex(store)
    for i in range(2500):
        store.write(task(i, SUCCESS, "2020-01-01T00:00:00+00:00"))
    store.write(task(9999))
    assert sweep(index, 3600) == 2500 > maintenance._EXPIRE_PER_BATCH
    assert task_ids(store) == [task(9999).id] and len(index) == 1


def test_a_killed_writers_temporary_file_is_removed_once_stale(store: FileStore) -> None:
    # A writer killed with kill -9 between creating its temporary file and renaming it leaves that
    # file behind (named after the task, the writer's pid and thread); sweeps remove it after an hour,
    # never a fresh one that a live writer is about to rename.
    task_id = task(1).id
    stale = store.folder / f".{task_id}.999999.1.tmp"
    fresh = store.folder / f".{task_id}.999998.1.tmp"
    stale.write_bytes(b'{"torn')
    fresh.write_bytes(b'{"being written')
    hour_ago = time.time() - 3601
    os.utime(stale, (hour_ago, hour_ago))
    index = TaskIndex(store)
    try:
        sweep(index, ttl=0)
    finally:
        index.close()
    assert not stale.exists() and fresh.exists()
