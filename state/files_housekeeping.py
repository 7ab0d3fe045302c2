"""One housekeeping round of the files backend: the index kept in line with the folder, leftovers
removed, and results older than RESULT_TTL deleted so the disk does not fill with state files."""

from __future__ import annotations

import logging
import time

from state.files_index import TaskIndex

log = logging.getLogger(__name__)

# A cancellation request whose task file is gone is kept this long for a late message, then removed.
_ORPHAN_CANCEL_AGE = 24 * 3600
_STALE_TEMP_AGE = 3600
_REFRESH_PER_SWEEP = 1000
_EXPIRE_PER_BATCH = 1000
# Under load the folder and the index differ by the tasks being added during a rescan's walk; a
# full comparison (~650 ms at 100,000 tasks) then runs at most this often.
_COMPARE_EVERY = 60.0


def sweep(index: TaskIndex, ttl: float) -> int:
    """One round (blocking); returns how many expired tasks were removed. `ttl` 0 keeps everything."""
    store = index.store
    index.rescan(at_most_every=_COMPARE_EVERY)
    # Listings refresh only a few not-ended tasks per call; here more, the stalest first. Not
    # all: a backlog of 20,000 waiting tasks would cost a second of reads every round.
    index.refresh_live(_REFRESH_PER_SWEEP)
    # Requests left for messages that never arrived (a publish that was not confirmed).
    for task_id in store.orphan_cancels(time.time() - _ORPHAN_CANCEL_AGE):
        store.clear_cancel(task_id)
    # A write takes milliseconds: a temporary file an hour old belongs to a writer that died.
    store.remove_stale_temp_files(time.time() - _STALE_TEMP_AGE)
    if not ttl:
        return 0
    removed = 0
    cutoff = time.time() - ttl
    # In batches, so a week's worth of results expiring at once is never one list in memory.
    while expired := index.expired(cutoff, _EXPIRE_PER_BATCH):
        for task_id in expired:
            store.delete(task_id)
        index.discard_many(expired)
        removed += len(expired)
    if removed:
        log.info("removed %d results older than RESULT_TTL=%gs", removed, ttl)
    return removed
