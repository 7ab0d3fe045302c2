"""TaskIndex and the housekeeper: paging from the index, files added or removed by others, retention."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from state.files import FileStore
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


def test_pages_are_newest_first(store: FileStore) -> None:
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


def test_status_filter_sees_a_change_made_by_the_worker(store: FileStore) -> None:
    index = TaskIndex(store)
    index.add(task(1))
    store.write(task(1).evolve(status=PROGRESS))
    time.sleep(0.25)
    assert index.page(0, 10, PROGRESS)[1] == 1
    assert index.page(0, 10, WAITING)[1] == 0


def test_rescan_picks_up_added_and_removed_files(store: FileStore) -> None:
    index = TaskIndex(store)
    store.write(task(1))
    index.rescan()
    assert len(index) == 1
    store.write(task(2))
    store.delete(task(1).id)
    index.rescan()
    assert [s.id for s in index.page(0, 10)[0]] == [task(2).id]


def test_a_page_skips_a_file_removed_since_the_last_scan(store: FileStore) -> None:
    index = TaskIndex(store)
    for i in range(3):
        store.write(task(i))
        index.add(task(i))
    store.delete(task(1).id)
    assert [s.id for s in index.page(0, 10)[0]] == [task(2).id, task(0).id]
    assert len(index) == 2


def test_out_of_order_insertions_keep_the_order(store: FileStore) -> None:
    index = TaskIndex(store)
    for i in (5, 1, 9, 3):
        store.write(task(i))
        index.add(task(i))
    assert [s.id for s in index.page(0, 10)[0]] == [task(i).id for i in (9, 5, 3, 1)]


class CountingStore(FileStore):
    """The real store, counting file reads."""

    reads = 0

    def read(self, task_id: object) -> TaskState:
        self.reads += 1
        return super().read(task_id)


def test_a_filtered_page_rereads_a_bounded_number_of_live_tasks(tmp_path) -> None:
    from state.files_index import LIVE_REFRESH_BUDGET

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


def test_a_filtered_page_leaves_out_a_task_whose_status_changed(store: FileStore) -> None:
    index = TaskIndex(store)
    for i in range(3):
        store.write(task(i, status=PROGRESS))
        index.add(task(i, status=PROGRESS))
    store.write(task(1).evolve(status=SUCCESS, stoptime="2026-11-28T03:00:00+00:00"))
    # Within _LIVE_REFRESH the index still counts it as PROGRESS; the page, read fresh, does not show it.
    page, _ = index.page(0, 10, PROGRESS)
    assert [s.id for s in page] == [task(2).id, task(0).id]


def test_listings_walk_a_covering_index_and_never_sort(store: FileStore) -> None:
    # A plan that scans the table or sorts in a temporary B-tree would cost O(tasks) per page.
    from state import files_schema as index_module

    index = TaskIndex(store)
    for sql, args in (
        (index_module.PAGE, (100, 0)),
        (index_module.PAGE_OF_STATUS, (SUCCESS, 100, 0)),
        (index_module.DUE, (0.0, 10)),
        (index_module.EXPIRED, (0.0, 10)),
    ):
        plan = " / ".join(row[-1] for row in index._db.execute("EXPLAIN QUERY PLAN " + sql, args))
        assert "TEMP B-TREE" not in plan and "USING" in plan and "INDEX" in plan, (sql, plan)
    for sql in (index_module.PAGE, index_module.PAGE_OF_STATUS):
        plan = " / ".join(
            row[-1] for row in index._db.execute("EXPLAIN QUERY PLAN " + sql, (SUCCESS, 1, 0)[-sql.count("?") :])
        )
        assert "COVERING INDEX" in plan, plan


def test_counts_follow_every_change(store: FileStore) -> None:
    index = TaskIndex(store)
    for i in range(10):
        store.write(task(i))
    index.rescan()
    assert len(index) == 10 and index.page(0, 1, WAITING)[1] == 10
    index.add(task(3, SUCCESS, "2026-11-28T04:00:00+00:00"))
    index.add(task(3, SUCCESS, "2026-11-28T04:00:00+00:00"))  # the same again changes nothing
    index.discard(task(4).id)
    index.discard(task(4).id)
    index.discard("not-an-indexed-id")
    assert len(index) == 9
    assert index.page(0, 1, WAITING)[1] == 8 and index.page(0, 1, SUCCESS)[1] == 1


def test_a_rescan_of_an_unchanged_folder_reads_no_file(tmp_path: Path) -> None:
    store = CountingStore(tmp_path)
    for i in range(300):
        store.write(task(i, SUCCESS, "2026-11-28T04:00:00+00:00"))
    index = TaskIndex(store)
    index.rescan()
    assert len(index) == 300 and store.reads == 300
    store.reads = 0
    index.rescan()
    assert store.reads == 0
    # One removed and one added: the number is the same, the fingerprint is not.
    store.delete(task(7).id)
    store.write(task(1000))
    index.rescan()
    assert store.reads == 1 and len(index) == 300
    ids = {s.id for s in index.page(0, 1000)[0]}
    assert task(1000).id in ids and task(7).id not in ids
    # The housekeeper's rescans compare the whole folder at most once a window.
    store.write(task(1001))
    store.reads = 0
    index.rescan(at_most_every=60)
    assert store.reads == 0 and len(index) == 300, "a comparison ran moments ago"
    index.rescan()
    assert store.reads == 1 and len(index) == 301


def test_index_memory_does_not_grow_with_the_number_of_tasks(tmp_path: Path) -> None:
    # The index lives in SQLite's temporary file; Python keeps nothing per task. The old
    # in-memory index held ~500 bytes a task: 10 MB here.
    import tracemalloc

    store = FileStore(tmp_path)
    n = 20_000
    for i in range(n):
        store.write(task(i, SUCCESS, "2026-11-28T04:00:00+00:00"))
    index = TaskIndex(store)
    tracemalloc.start()
    try:
        index.rescan()  # the first scan: every file read and added
        grown, _ = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        index.rescan()  # an unchanged folder: one walk of the names
        _, walk_peak = tracemalloc.get_traced_memory()
        page, total = index.page(n // 2, 100)
    finally:
        tracemalloc.stop()
    assert len(index) == n and total == n and len(page) == 100
    assert grown < 200_000, f"{grown} bytes kept after indexing {n} tasks"
    assert walk_peak < 500_000, f"{walk_peak} bytes at the peak of a rescan of {n} files"


def test_a_write_that_fails_midway_is_rebuilt_by_the_next_rescan(store: FileStore) -> None:
    from state.errors import StorageError

    index = TaskIndex(store)
    for i in range(5):
        store.write(task(i))
    index.rescan()
    # The temporary folder fills up: SQLite refuses to grow the file past its current size.
    pages = index._db.execute("PRAGMA page_count").fetchone()[0]
    index._db.execute(f"PRAGMA max_page_count = {pages}")
    more = [task(i) for i in range(5, 2005)]
    for state in more:
        store.write(state)
    with pytest.raises(StorageError, match="full"):
        index.add_many(more)
    with pytest.raises(StorageError, match="rebuilt"):
        index.page(0, 10)
    index.rescan()
    page, total = index.page(0, 3)
    assert total == 2005 and [s.id for s in page] == [task(i).id for i in (2004, 2003, 2002)]
    assert index.page(0, 1, WAITING)[1] == 2005
