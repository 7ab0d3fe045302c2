"""The Thrift server's housekeeping thread: keeps the task index in line with the state folder and
removes results older than RESULT_TTL, so the disk does not fill with state files forever."""

from __future__ import annotations

import logging
import threading
import time

from tserver.index import TaskIndex
from worker.errors import StorageError

log = logging.getLogger(__name__)

# A cancellation request whose task file is gone is kept this long for a late message, then removed.
_ORPHAN_CANCEL_AGE = 24 * 3600
_STALE_TEMP_AGE = 3600
_REFRESH_PER_SWEEP = 1000
_EXPIRE_PER_BATCH = 1000
# Under load the folder and the index differ by the tasks being added during a rescan's walk; a
# full comparison (~650 ms at 100,000 tasks) then runs at most this often.
_COMPARE_EVERY = 60.0


class Housekeeper(threading.Thread):
    """Every `interval` seconds: rescan the folder, then delete ended tasks older than `ttl` (0: keep)."""

    def __init__(self, index: TaskIndex, interval: float, ttl: float) -> None:
        super().__init__(name="housekeeper", daemon=True)
        self.index = index
        self.interval = interval
        self.ttl = ttl
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.interval):
            try:
                self.sweep()
            except (OSError, StorageError) as exc:  # a passing disk problem must not end housekeeping
                log.warning("housekeeping failed: %s", exc)

    def sweep(self) -> int:
        """One round; returns how many expired tasks were removed."""
        self.index.rescan(at_most_every=_COMPARE_EVERY)
        # Listings refresh only a few not-ended tasks per call; here more, the stalest first. Not
        # all: a backlog of 20,000 waiting tasks would cost a second of reads every round.
        self.index.refresh_live(_REFRESH_PER_SWEEP)
        # Requests left for messages that never arrived (a publish that was not confirmed).
        for task_id in self.index.store.orphan_cancels(time.time() - _ORPHAN_CANCEL_AGE):
            self.index.store.clear_cancel(task_id)
        # A write takes milliseconds: a temporary file an hour old belongs to a writer that died.
        self.index.store.remove_stale_temp_files(time.time() - _STALE_TEMP_AGE)
        if not self.ttl:
            return 0
        removed = 0
        cutoff = time.time() - self.ttl
        # In batches, so a week's worth of results expiring at once is never one list in memory.
        while expired := self.index.expired(cutoff, _EXPIRE_PER_BATCH):
            for task_id in expired:
                self.index.store.delete(task_id)
            self.index.discard_many(expired)
            removed += len(expired)
        if removed:
            log.info("removed %d results older than RESULT_TTL=%gs", removed, self.ttl)
        return removed

    def stop(self) -> None:
        """Ask the thread to end after its current round."""
        self._stop_event.set()
