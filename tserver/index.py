"""TaskIndex: what the Thrift server knows of the state folder, so a page of the task list costs the
same at 100,000 tasks as at 1,000.

Reading every state file per listing costs ~44 us a file (440 ms at 10,000 tasks, FIELD-NOTES).
The index keeps, per task, only its queue time, its status and (once ended) its stop time: the
files stay the one source of truth. A task that has ended never changes again, so only the few
waiting or running tasks are re-read, and only when a listing needs their status. A page's
records are always read fresh from their files.

Tasks created by this server are added as they are created; a periodic rescan (see
`TaskIndex.rescan`) picks up files that others added or removed, and drops expired results.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from worker.errors import UnknownTask
from worker.state import FINAL_STATUSES, StateStore, TaskState

log = logging.getLogger(__name__)

# A running task's status, as the index remembers it, is refreshed at most this often.
_LIVE_REFRESH = 0.2
# A filtered listing re-reads at most this many of the tasks not yet ended (those seen longest ago
# first); the housekeeper refreshes all of them in the background. So a filtered page costs the
# same with a backlog of 5,000 waiting tasks as with none (each re-read is a file read, ~45 us).
LIVE_REFRESH_BUDGET = 32


@dataclass(slots=True)
class _Entry:
    queued: float  # pushqtime as a POSIX timestamp
    status: str
    stopped: float | None  # stoptime as a POSIX timestamp, once final
    checked: float  # time.monotonic() of the last read


class TaskIndex:
    """Newest-first paging over the tasks of one state folder."""

    def __init__(self, store: StateStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._order: list[tuple[float, str]] = []  # ascending (queued, id)
        # The same keys split by status, so a filtered page is a slice too, not a scan of every task.
        self._by_status: dict[str, list[tuple[float, str]]] = {}
        # Ids not yet final, the one whose status was read longest ago first.
        self._live: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def add(self, state: TaskState) -> None:
        """Record a task (new or changed)."""
        entry = _Entry(_timestamp(state.pushqtime), state.status, _stop_timestamp(state), time.monotonic())
        with self._lock:
            old = self._entries.get(state.id)
            if old is not None and old.queued != entry.queued:
                self._remove_locked(state.id)
                old = None
            self._entries[state.id] = entry
            key = (entry.queued, state.id)
            if old is None:
                _insert(self._order, key)
            elif old.status != entry.status:
                _delete(self._by_status[old.status], key)
            if old is None or old.status != entry.status:
                _insert(self._by_status.setdefault(entry.status, []), key)
            if state.is_final:
                self._live.pop(state.id, None)
            else:
                self._live[state.id] = None
                self._live.move_to_end(state.id)  # just read: the last to be due again

    def discard(self, task_id: str) -> None:
        """Forget a task (its file was removed)."""
        with self._lock:
            self._remove_locked(task_id)

    def page(self, offset: int, limit: int, status: str = "") -> tuple[list[TaskState], int]:
        """Tasks [offset, offset+limit) newest first, optionally only one status; and how many match.

        The records are read fresh from their files; under a status filter, a task that has changed
        status since the index last saw it is left out, so a page may be a few short."""
        if status:
            self.refresh_live(LIVE_REFRESH_BUDGET)
        with self._lock:
            keys = self._by_status.get(status, []) if status else self._order
            total = len(keys)
            end = total - offset
            ids = [tid for _, tid in reversed(keys[max(0, end - limit): max(0, end)])]
        states = []
        for task_id in ids:
            try:
                state = self.store.read(task_id)
            except UnknownTask:  # removed since: the page is one short rather than wrong
                self.discard(task_id)
                continue
            self.add(state)
            if status and state.status != status:
                continue
            states.append(state)
        return states, total

    def rescan(self) -> None:
        """Bring the index in line with the folder: add new files, drop removed ones."""
        on_disk = set(self.store.task_ids())
        with self._lock:
            known = set(self._entries)
        for task_id in known - on_disk:
            self.discard(task_id)
        for task_id in on_disk - known:
            try:
                self.add(self.store.read(task_id))
            except UnknownTask:
                continue

    def expired(self, cutoff: float) -> list[str]:
        """Ids of ended tasks that stopped before `cutoff` (a POSIX timestamp)."""
        with self._lock:
            return [tid for tid, e in self._entries.items() if e.stopped is not None and e.stopped < cutoff]

    def refresh_live(self, budget: int | None = None) -> int:
        """Re-read tasks not yet ended whose status was seen over _LIVE_REFRESH ago (at most
        `budget` of them, those seen longest ago first); how many were read."""
        now = time.monotonic()
        due = []
        with self._lock:
            # _live is in the order of the last read, so the due ones are at its front.
            for task_id in self._live:
                if (budget is not None and len(due) >= budget) or now - self._entries[task_id].checked <= _LIVE_REFRESH:
                    break
                due.append(task_id)
        for task_id in due:
            try:
                self.add(self.store.read(task_id))
            except UnknownTask:
                self.discard(task_id)
        return len(due)

    def _remove_locked(self, task_id: str) -> None:
        entry = self._entries.pop(task_id, None)
        if entry is None:
            return
        self._live.pop(task_id, None)
        key = (entry.queued, task_id)
        _delete(self._order, key)
        _delete(self._by_status[entry.status], key)


def _insert(keys: list[tuple[float, str]], key: tuple[float, str]) -> None:
    if not keys or key > keys[-1]:
        keys.append(key)  # the common case: the newest task
    else:
        bisect.insort(keys, key)


def _delete(keys: list[tuple[float, str]], key: tuple[float, str]) -> None:
    i = bisect.bisect_left(keys, key)
    if i < len(keys) and keys[i] == key:
        del keys[i]


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def _stop_timestamp(state: TaskState) -> float | None:
    if state.status not in FINAL_STATUSES:
        return None
    return _timestamp(state.stoptime) if state.stoptime else time.time()
