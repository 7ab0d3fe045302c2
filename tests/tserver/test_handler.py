"""RPCceleryHandler without sockets: validation, the WAITING-file-before-publish rule, errors."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from RPC.ttypes import BadArgument, BadDecimal, BadTask, TaskFinished, Unavailable
from state.files import FileStore
from state.files_catalog import FileCatalog
from state.records import WAITING
from tserver.errors import QueueUnavailable
from tserver.handler import RPCceleryHandler
from tserver.publish_guard import PublishGuard


class RecordingQueue:
    """Stands in for the broker in these unit tests only (the e2e tests use RabbitMQ)."""

    def __init__(self, store: FileStore, fail: bool = False) -> None:
        self.store, self.fail, self.sent = store, fail, []

    async def __call__(self, task_id: str, decimal: int) -> None:
        # The rule under test: the state file exists before the message is published.
        assert self.store.read(task_id).status == WAITING
        if self.fail:
            raise QueueUnavailable("broker down")
        self.sent.append((task_id, decimal))


class SyncHandler:
    """The handler's coroutine methods called as plain functions, each on an event loop of its own."""

    def __init__(self, handler: RPCceleryHandler) -> None:
        object.__setattr__(self, "handler", handler)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.handler, name)
        if inspect.iscoroutinefunction(attr):
            return lambda *args: asyncio.run(attr(*args))
        return attr

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self.handler, name, value)


def handler_for(store: FileStore, enqueue: Any, **kwargs: Any) -> Any:
    """A handler on the files backend of `store`'s folder."""
    return SyncHandler(RPCceleryHandler(FileCatalog(store), enqueue, disk_path=str(store.folder), **kwargs))


def start(handler: Any, decimal: object) -> str:
    return handler.startCalcPi(decimal)


def task_ids(store: FileStore) -> list[str]:
    return list(store.iter_task_ids())


@pytest.fixture
def store(tmp_path: Path) -> FileStore:
    return FileStore(tmp_path)


def test_start_writes_waiting_then_publishes(store: FileStore) -> None:
    queue = RecordingQueue(store)
    handler = handler_for(store, queue, max_decimal=10)
    task_id = start(handler, 7)
    assert queue.sent == [(task_id, 7)]
    record = handler.getTaskStatus(task_id)
    assert (record.status, record.decimal, record.progress, record.digits) == (WAITING, 7, 0.0, None)


@pytest.mark.parametrize("decimal", [0, -1, 11, 127, -128, None, 1.0, True, "3"])
def test_bad_decimal(store: FileStore, decimal: object) -> None:
    handler = handler_for(store, RecordingQueue(store), max_decimal=10)
    with pytest.raises(BadDecimal) as caught:
        start(handler, decimal)  # type: ignore[arg-type] - wrong types on purpose: the handler must refuse them
    assert caught.value.message == "decimal must be an integer from 1 to 10"
    assert list(store.folder.iterdir()) == []


def test_broker_down_leaves_no_waiting_file(store: FileStore) -> None:
    handler = handler_for(store, RecordingQueue(store, fail=True), max_decimal=10)
    with pytest.raises(Unavailable, match="RabbitMQ"):
        start(handler, 3)
    assert task_ids(store) == []
    # What is left is the request that makes a worker drop the message, should it still arrive.
    [leftover] = list(store.folder.iterdir())
    assert store.cancel_requested(leftover.name.removeprefix(".cancel-"))


def test_a_publish_confirmed_too_late_is_refused_and_tombstoned(store: FileStore) -> None:
    async def slow_enqueue(task_id: str, decimal: int) -> None:
        await asyncio.sleep(0.3)

    guard = PublishGuard(deadline=0.1, cooldown=0.5)
    handler = handler_for(store, slow_enqueue, max_decimal=10, guard=guard)
    with pytest.raises(Unavailable):
        start(handler, 3)
    # The message did reach the queue: its record says it was not accepted, and the worker drops it.
    [task_id] = task_ids(store)
    record = store.read(task_id)
    assert record.status == "REVOKED" and record.error.startswith("not accepted: the broker confirmed after")
    assert store.cancel_requested(task_id)
    # During the cool-down, starts fail at once without touching the broker.
    calls = []

    async def recording_enqueue(task_id: str, decimal: int) -> None:
        calls.append(task_id)

    handler.enqueue = recording_enqueue
    with pytest.raises(Unavailable):
        start(handler, 3)
    assert calls == []
    time.sleep(0.6)
    assert start(handler, 3) and len(calls) == 1


def test_guard_refuses_while_a_publish_is_overdue() -> None:
    guard = PublishGuard(deadline=0.1)
    entered = threading.Event()
    release = threading.Event()

    def stuck() -> None:
        with contextlib.suppress(QueueUnavailable), guard.publishing():
            entered.set()
            release.wait(5)

    thread = threading.Thread(target=stuck)
    thread.start()
    try:
        entered.wait(5)
        with guard.publishing():  # not overdue yet: allowed
            pass
        time.sleep(0.15)
        with pytest.raises(QueueUnavailable, match="not answering"), guard.publishing():
            pass
    finally:
        release.set()
        thread.join()


def test_unwritable_state_folder_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    store = FileStore(blocker)
    queue = RecordingQueue(store)
    with pytest.raises(Unavailable, match="cannot write"):
        start(handler_for(store, queue, max_decimal=10), 3)
    assert queue.sent == []


@pytest.mark.parametrize("task_id", ["", "../../etc/passwd", "x" * 100_000, "00000000-0000-4000-8000-000000000000"])
def test_unknown_task(store: FileStore, task_id: str) -> None:
    with pytest.raises(BadTask, match="no task with"):
        handler_for(store, RecordingQueue(store), max_decimal=10).getTaskStatus(task_id)


def test_paging_and_filter(store: FileStore) -> None:
    handler = handler_for(store, RecordingQueue(store), max_decimal=10)
    ids = [start(handler, 2) for _ in range(5)]
    page = handler.listTaskPage(1, 2, "")
    assert page.total == 5 and [t.id for t in page.tasks] == ids[::-1][1:3]
    assert handler.listTaskPage(0, 100, "SUCCESS").total == 0
    assert [t.id for t in handler.listTasks()] == ids[::-1]
    for args in ((-1, 10, ""), (0, 0, ""), (0, 1001, ""), (0, 10, "DONE")):
        with pytest.raises(BadArgument):
            handler.listTaskPage(*args)


def test_host_status_names_the_state_folder(store: FileStore) -> None:
    status = handler_for(store, RecordingQueue(store), max_decimal=10).getHostStatus()
    assert status.disk.path == str(store.folder) and status.cpu.count >= 1 and len(status.cpu.load_average) == 3


def test_cancel_a_waiting_task(store: FileStore) -> None:
    handler = handler_for(store, RecordingQueue(store), max_decimal=10)
    task_id = start(handler, 5)
    record = handler.cancelTask(task_id)
    assert record.status == "REVOKED" and record.stoptime is not None
    assert store.read(task_id).status == "REVOKED"
    # The request stays for the worker: when the message arrives it must not run the task.
    assert store.cancel_requested(task_id)
    assert handler.listTaskPage(0, 10, "REVOKED").total == 1


def test_cancel_an_ended_or_unknown_task(store: FileStore) -> None:
    handler = handler_for(store, RecordingQueue(store), max_decimal=10)
    task_id = start(handler, 5)
    store.write(store.read(task_id).evolve(status="SUCCESS", stoptime="2026-11-28T03:00:00+00:00", digits="3.14159"))
    with pytest.raises(TaskFinished) as caught:
        handler.cancelTask(task_id)
    assert caught.value.status == "SUCCESS"
    assert not store.cancel_requested(task_id)
    for bad in ("00000000-0000-4000-8000-000000000000", "../x", ""):
        with pytest.raises(BadTask):
            handler.cancelTask(bad)


def test_cancel_a_task_whose_worker_died(store: FileStore) -> None:
    handler = handler_for(store, RecordingQueue(store), max_decimal=10, stalled_after=1.0)
    task_id = start(handler, 5)
    store.write(store.read(task_id).evolve(status="PROGRESS", heartbeat="2026-01-01T00:00:00+00:00"))
    assert handler.getTaskStatus(task_id).stalled is True
    record = handler.cancelTask(task_id)
    assert record.status == "REVOKED" and "no worker" in record.error


def test_stalled_only_when_the_heartbeat_is_old(store: FileStore) -> None:
    from state.records import utcnow

    handler = handler_for(store, RecordingQueue(store), max_decimal=10, stalled_after=30.0)
    task_id = start(handler, 5)
    assert handler.getTaskStatus(task_id).stalled is False
    store.write(store.read(task_id).evolve(status="PROGRESS", heartbeat=utcnow()))
    assert handler.getTaskStatus(task_id).stalled is False
    store.write(store.read(task_id).evolve(heartbeat="2026-01-01T00:00:00+00:00"))
    assert handler.getTaskStatus(task_id).stalled is True


def test_cancel_of_a_task_that_ends_meanwhile_is_task_finished(store: FileStore) -> None:
    # The worker records SUCCESS while cancelTask waits for it to stop: an IDL exception that passes
    # through the storage-error guard untouched.
    handler = handler_for(store, RecordingQueue(store), max_decimal=10)
    task_id = start(handler, 5)
    store.write(store.read(task_id).evolve(status="PROGRESS", heartbeat="2099-01-01T00:00:00+00:00"))
    done = store.read(task_id).evolve(status="SUCCESS", stoptime="2026-11-28T03:00:00+00:00", digits="3.14159")
    threading.Timer(0.1, store.write, args=(done,)).start()
    with pytest.raises(TaskFinished) as caught:
        handler.cancelTask(task_id)
    assert caught.value.status == "SUCCESS"
