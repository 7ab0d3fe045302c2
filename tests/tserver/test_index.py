"""TaskIndex and the housekeeper: paging from the index, files added or removed by others, retention."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tserver.index import TaskIndex
from tserver.maintenance import Housekeeper
from worker.state import PROGRESS, SUCCESS, WAITING, StateStore, TaskState


def task(i: int, status: str = WAITING, stoptime: str | None = None) -> TaskState:
    return TaskState(id=f"00000000-0000-4000-8000-{i:012d}", status=status, decimal=3,
                     pushqtime=f"2026-11-28T03:{i // 60:02d}:{i % 60:02d}+00:00", stoptime=stoptime)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    return StateStore(tmp_path)


def test_pages_are_newest_first(store: StateStore) -> None:
    for i in range(250):
        store.write(task(i, SUCCESS if i % 2 else WAITING, "2026-11-28T04:00:00+00:00" if i % 2 else None))
    index = TaskIndex(store)
    index.rescan()
    page, total = index.page(0, 100)
    assert total == 250 and [s.id for s in page] == [task(i).id for i in range(249, 149, -1)]
    page, total = index.page(200, 100)
    assert [s.id for s in page] == [task(i).id for i in range(49, -1, -1)]
    assert index.page(300, 10) == ([], 250)
    page, total = index.page(10, 5, SUCCESS)
    assert total == 125 and [s.id for s in page] == [task(i).id for i in (229, 227, 225, 223, 221)]


def test_status_filter_sees_a_change_made_by_the_worker(store: StateStore) -> None:
    index = TaskIndex(store)
    index.add(task(1))
    store.write(task(1).evolve(status=PROGRESS))
    time.sleep(0.25)
    assert index.page(0, 10, PROGRESS)[1] == 1
    assert index.page(0, 10, WAITING)[1] == 0


def test_rescan_picks_up_added_and_removed_files(store: StateStore) -> None:
    index = TaskIndex(store)
    store.write(task(1))
    index.rescan()
    assert len(index) == 1
    store.write(task(2))
    store.delete(task(1).id)
    index.rescan()
    assert [s.id for s in index.page(0, 10)[0]] == [task(2).id]


def test_a_page_skips_a_file_removed_since_the_last_scan(store: StateStore) -> None:
    index = TaskIndex(store)
    for i in range(3):
        store.write(task(i))
        index.add(task(i))
    store.delete(task(1).id)
    assert [s.id for s in index.page(0, 10)[0]] == [task(2).id, task(0).id]
    assert len(index) == 2


def test_out_of_order_insertions_keep_the_order(store: StateStore) -> None:
    index = TaskIndex(store)
    for i in (5, 1, 9, 3):
        store.write(task(i))
        index.add(task(i))
    assert [s.id for s in index.page(0, 10)[0]] == [task(i).id for i in (9, 5, 3, 1)]


def test_retention_removes_only_old_ended_tasks(store: StateStore) -> None:
    old = task(1, SUCCESS, "2020-01-01T00:00:00+00:00")
    recent = task(2, SUCCESS, time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime()))
    running = task(3, PROGRESS)
    for state in (old, recent, running):
        store.write(state)
    store.request_cancel(old.id)
    index = TaskIndex(store)
    assert Housekeeper(index, interval=60, ttl=3600).sweep() == 1
    assert sorted(store.task_ids()) == [recent.id, running.id]
    assert not store.cancel_requested(old.id)
    assert Housekeeper(index, interval=60, ttl=0).sweep() == 0, "RESULT_TTL=0 keeps everything"


def test_housekeeper_thread_runs_and_stops(store: StateStore) -> None:
    store.write(task(1, SUCCESS, "2020-01-01T00:00:00+00:00"))
    keeper = Housekeeper(TaskIndex(store), interval=0.05, ttl=60)
    keeper.start()
    try:
        deadline = time.monotonic() + 5
        while store.task_ids() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        keeper.stop()
        keeper.join(2)
    assert store.task_ids() == [] and not keeper.is_alive()


def test_housekeeper_removes_old_orphan_cancellation_requests(store: StateStore) -> None:
    import os

    store.request_cancel(task(1).id)  # its task file is gone: a message that never arrived
    store.request_cancel(task(2).id)  # recent: kept for a late message
    store.write(task(3))
    store.request_cancel(task(3).id)  # its task still exists: kept
    day_ago = time.time() - 2 * 24 * 3600
    for i in (1, 3):
        os.utime(store.folder / f".cancel-{task(i).id}", (day_ago, day_ago))
    Housekeeper(TaskIndex(store), interval=60, ttl=0).sweep()
    assert not store.cancel_requested(task(1).id)
    assert store.cancel_requested(task(2).id) and store.cancel_requested(task(3).id)


class CountingStore(StateStore):
    """The real store, counting file reads."""

    reads = 0

    def read(self, task_id: object) -> TaskState:
        self.reads += 1
        return super().read(task_id)


def test_a_filtered_page_rereads_a_bounded_number_of_live_tasks(tmp_path) -> None:
    from tserver.index import LIVE_REFRESH_BUDGET

    store = CountingStore(tmp_path)
    index = TaskIndex(store)
    for i in range(1000):  # a backlog: 1,000 tasks waiting, none ended
        store.write(task(i))
        index.add(task(i))
    for i in range(0, 1000, 10):  # meanwhile a tenth were finished by a worker
        store.write(task(i).evolve(status=SUCCESS, stoptime="2026-11-28T03:00:00+00:00"))
    time.sleep(0.25)
    store.reads = 0
    page, _ = index.page(0, 10, SUCCESS)
    assert store.reads <= LIVE_REFRESH_BUDGET + 10
    assert all(s.status == SUCCESS for s in page)
    # The housekeeper's full refresh brings the counts in line with the files.
    assert index.refresh_live() > 0
    page, total = index.page(0, 200, SUCCESS)
    assert total == 100 and len(page) == 100 and all(s.status == SUCCESS for s in page)
    assert index.page(0, 10, WAITING)[1] == 900


def test_a_filtered_page_leaves_out_a_task_whose_status_changed(store: StateStore) -> None:
    index = TaskIndex(store)
    for i in range(3):
        store.write(task(i, status=PROGRESS))
        index.add(task(i, status=PROGRESS))
    store.write(task(1).evolve(status=SUCCESS, stoptime="2026-11-28T03:00:00+00:00"))
    # Within _LIVE_REFRESH the index still counts it as PROGRESS; the page, read fresh, does not show it.
    page, _ = index.page(0, 10, PROGRESS)
    assert [s.id for s in page] == [task(2).id, task(0).id]
