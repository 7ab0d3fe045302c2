"""Housekeeping: every HOUSEKEEPING_INTERVAL seconds, one round of the state store's upkeep (retention
of RESULT_TTL, and for the files backend the index kept in line with the folder), on the loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from state.errors import StorageError
from state.interface import TaskCatalog

log = logging.getLogger(__name__)


class Housekeeper:
    """Runs `catalog.housekeep()` now and then every `interval` seconds until stopped."""

    def __init__(self, catalog: TaskCatalog, interval: float) -> None:
        self.catalog = catalog
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the rounds on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="housekeeper")

    async def stop(self) -> None:
        """Stop after (or instead of) the current round."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.catalog.housekeep()
            except (OSError, StorageError) as exc:  # a passing disk or network problem must not end it
                log.warning("housekeeping failed: %s", exc)
