"""TaskIndex: what the Thrift server knows of the state folder, so a page of the task list costs the
same at 100,000 tasks as at 1,000, and the server's memory does not grow with the number of tasks.

Reading every state file per listing costs ~44 us a file (440 ms at 10,000 tasks, measured on our
2-core machines).
The index keeps, per task, only its queue time, its status and (once ended) its stop time: the
files stay the one source of truth. A task that has ended never changes again, so only the few
waiting or running tasks are re-read, and only when a listing needs their status. A page's
records are always read fresh from their files.

The index lives in a private SQLite database (a temporary file that SQLite deletes when it is
closed or the process ends) with a small page cache: its size on disk grows by ~200 bytes a task,
the process's memory does not. It is rebuilt from the folder at every start, so there is no file of
ours on disk to trust, migrate or repair. Nothing in it needs to survive a crash, so it has no
journal (an in-memory one churned ~8 MB of heap at 100,000 tasks) and all its work is one
transaction that is never committed: pages reach the file only when the cache is full, not at
every change. A write that fails midway therefore marks it broken, and the next rescan builds a
new one.

Tasks created by this server are added as they are created; a periodic rescan (see
`TaskIndex.rescan`) picks up files that others added or removed.
"""

from __future__ import annotations

import itertools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime

from state import files_schema as sql
from state.errors import StorageError, UnknownTask
from state.files import FileStore
from state.records import FINAL_STATUSES, STATUSES, TaskState

log = logging.getLogger(__name__)

# A running task's status, as the index remembers it, is refreshed at most this often.
_LIVE_REFRESH = 0.2
# A filtered listing re-reads at most this many of the tasks not yet ended (those seen longest ago
# first); the housekeeper refreshes all of them in the background. So a filtered page costs the
# same with a backlog of 5,000 waiting tasks as with none (each re-read is a file read, ~45 us).
LIVE_REFRESH_BUDGET = 32
# Work in the database is done in batches of this many ids, so no statement holds the lock (and a
# start waiting on it on the event loop) for more than about a millisecond.
_BATCH = 500
_MASK = (1 << 64) - 1


class TaskIndex:
    """Newest-first paging over the tasks of one state folder. Safe to share between threads."""

    def __init__(self, store: FileStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._db = _open()
        # The sum of hash(id) over the indexed ids: with their number, a fingerprint of the set
        # that `rescan` compares with the folder's without holding either set in memory.
        self._id_sum = 0
        self._broken = False
        self._compared = -math.inf  # time.monotonic() of the last full comparison with the folder

    def __len__(self) -> int:
        with self._lock, self._reading():
            return self._total_locked("")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- changes ----------------------------------------------------------------------------------

    def add(self, state: TaskState) -> None:
        """Record a task (new or changed)."""
        self.add_many((state,))

    def add_many(self, states: Iterable[TaskState]) -> None:
        """Record several tasks (new or changed)."""
        now = time.monotonic()
        rows = [
            (s.id, _timestamp(s.pushqtime), s.status, _stop_timestamp(s), None if s.is_final else now) for s in states
        ]
        if not rows:
            return
        added = []
        with self._lock, self._writing():
            for row in rows:
                if self._db.execute(sql.INSERT, row).rowcount:
                    added.append(row[0])
                else:
                    self._db.execute(sql.UPDATE, (*row[1:], row[0]))
            # (A failed transaction marks the index broken: it is rebuilt, this sum with it.)
            self._id_sum = (self._id_sum + _hash_sum(added)) & _MASK

    def discard(self, task_id: str) -> None:
        """Forget a task (its file was removed)."""
        self.discard_many((task_id,))

    def discard_many(self, task_ids: Iterable[str]) -> None:
        """Forget several tasks."""
        ids = list(task_ids)
        if not ids:
            return
        with self._lock, self._writing():
            removed = [t for t in ids if self._db.execute("DELETE FROM task WHERE id = ?", (t,)).rowcount]
            self._id_sum = (self._id_sum - _hash_sum(removed)) & _MASK

    # -- queries ----------------------------------------------------------------------------------

    def page(self, offset: int, limit: int, status: str = "") -> tuple[list[TaskState], int]:
        """Tasks [offset, offset+limit) newest first, optionally only one status; and how many match.

        The records are read fresh from their files; under a status filter, a task that has changed
        status since the index last saw it is left out, so a page may be a few short."""
        if status:
            self.refresh_live(LIVE_REFRESH_BUDGET)
        with self._lock, self._reading():
            if status:
                rows = self._db.execute(sql.PAGE_OF_STATUS, (status, limit, offset)).fetchall()
            else:
                rows = self._db.execute(sql.PAGE, (limit, offset)).fetchall()
            total = self._total_locked(status)
        states, seen, gone = [], [], []
        for task_id, known in rows:
            try:
                state = self.store.read(task_id)
            except UnknownTask:  # removed since: the page is one short rather than wrong
                gone.append(task_id)
                continue
            if state.status != known or not state.is_final:
                seen.append(state)  # an ended task that the index knows as ended costs no write
            if status and state.status != status:
                continue
            states.append(state)
        self.add_many(seen)
        self.discard_many(gone)
        return states, total

    def counts(self) -> dict[str, int]:
        """Tasks by status as the index last saw them (its tally: one row a status)."""
        with self._lock, self._reading():
            tally = dict(self._db.execute("SELECT status, n FROM tally").fetchall())
        return {status: int(tally.get(status, 0)) for status in STATUSES}

    def expired(self, cutoff: float, limit: int = 10_000) -> list[str]:
        """Ids of ended tasks that stopped before `cutoff` (a POSIX timestamp), the oldest first, at
        most `limit` of them."""
        with self._lock, self._reading():
            return [row[0] for row in self._db.execute(sql.EXPIRED, (cutoff, limit))]

    # -- keeping up with the folder -----------------------------------------------------------------

    def refresh_live(self, budget: int | None = None) -> int:
        """Re-read tasks not yet ended whose status was seen over _LIVE_REFRESH ago (at most
        `budget` of them, those seen longest ago first); how many were read."""
        with self._lock, self._reading():
            due = [
                row[0]
                for row in self._db.execute(
                    sql.DUE, (time.monotonic() - _LIVE_REFRESH, -1 if budget is None else budget)
                )
            ]
        for batch in _batches(due, _BATCH):
            self._read_into_index(batch)
        return len(due)

    def rescan(self, at_most_every: float = 0.0) -> None:
        """Bring the index in line with the folder: add new files, drop removed ones (after a failed
        write, into a new database).

        One walk of the folder's names gives their number and a sum of their hashes; when both
        equal the index's (before or after the walk), the sets are the same and nothing more is
        read (~100 ms at 100,000 tasks). Otherwise the folder and the index are compared in
        batches, each looked up in the other, so neither is held in memory whole (~650 ms). While
        this server adds tasks during the walk the fingerprints rarely match, so the comparison
        runs at most once every `at_most_every` seconds."""
        if self._broken:
            self._rebuild()
        before = self._fingerprint()
        count = id_sum = 0
        for task_id in self.store.iter_task_ids():  # a loop, not a list: one name at a time
            count += 1
            id_sum += hash(task_id)
        if (count, id_sum & _MASK) in (before, self._fingerprint()):
            return
        if time.monotonic() - self._compared < at_most_every:
            return
        self._compared = time.monotonic()
        for batch in _batches(self.store.iter_task_ids(), _BATCH):
            with self._lock, self._reading():
                marks = ",".join("?" * len(batch))
                known = {row[0] for row in self._db.execute(f"SELECT id FROM task WHERE id IN ({marks})", batch)}
            self._read_into_index([t for t in batch if t not in known])
        last = ""
        while True:
            with self._lock, self._reading():
                batch = [
                    row[0]
                    for row in self._db.execute("SELECT id FROM task WHERE id > ? ORDER BY id LIMIT ?", (last, _BATCH))
                ]
            if not batch:
                return
            last = batch[-1]
            self.discard_many(t for t in batch if not self.store.exists(t))

    # -- helpers ------------------------------------------------------------------------------------

    def _read_into_index(self, task_ids: list[str]) -> None:
        states, gone = [], []
        for task_id in task_ids:
            try:
                states.append(self.store.read(task_id))
            except UnknownTask:
                gone.append(task_id)
        self.add_many(states)
        self.discard_many(gone)

    def _rebuild(self) -> None:
        with self._lock:
            log.warning("rebuilding the task index after a failed write")
            self._db.close()
            self._db = _open()
            self._id_sum = 0
            self._broken = False
            self._compared = -math.inf

    def _fingerprint(self) -> tuple[int, int]:
        with self._lock, self._reading():
            return self._total_locked(""), self._id_sum

    def _total_locked(self, status: str) -> int:
        if status:
            row = self._db.execute("SELECT n FROM tally WHERE status = ?", (status,)).fetchone()
            return int(row[0]) if row else 0
        return int(self._db.execute("SELECT coalesce(sum(n), 0) FROM tally").fetchone()[0])

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """With no journal a failed change cannot be rolled back: the index is marked broken
        (every call fails with StorageError until the next rescan rebuilds it)."""
        with self._reading():
            try:
                yield
            except BaseException:
                self._broken = True
                raise

    @contextmanager
    def _reading(self) -> Iterator[None]:
        if self._broken:
            raise StorageError("task index: being rebuilt after a failed write; try again shortly")
        try:
            yield
        except sqlite3.Error as exc:  # the temporary folder is full or gone, say
            raise StorageError(f"task index: {exc}") from exc


def _open() -> sqlite3.Connection:
    # "" is SQLite's private temporary database: a file, unlinked when closed. One connection,
    # used under the index's lock by whichever thread holds it.
    db = sqlite3.connect("", isolation_level=None, check_same_thread=False)
    db.executescript(sql.SCHEMA)
    db.execute("BEGIN")  # never committed: see the module's docstring
    return db


def _hash_sum(ids: Iterable[str]) -> int:
    """The ids' part of the fingerprint (str hashes are stable within one process)."""
    return sum(map(hash, ids))


def _batches(items: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _stop_timestamp(state: TaskState) -> float | None:
    if state.status not in FINAL_STATUSES:
        return None
    return _timestamp(state.stoptime) if state.stoptime else time.time()
