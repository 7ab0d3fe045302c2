"""What every benchmark gets: the plan, the broker, the memory watch, and the products to measure.

Benchmarks that only read and write through the API share one product (started on first use);
those that need a given number of tasks on disk before start-up, or a clean slate (listing,
soak), get their own. Only one product runs at a time, so none steals CPU from the one measured.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from bench.memory import MemoryWatch
from bench.plan import Plan
from bench.stack import running_stack
from testing.stack import Stack

log = logging.getLogger(__name__)


@dataclass
class Lab:
    """Shared context of one `python -m bench` invocation."""

    plan: Plan
    broker_url: str
    watch: MemoryWatch
    _shared: Stack | None = None
    _shared_exit: ExitStack = field(default_factory=ExitStack)

    def shared_stack(self) -> Stack:
        """The product shared by the API benchmarks, started on first use."""
        if self._shared is None:
            self._shared = self._shared_exit.enter_context(running_stack(self.broker_url, "shared"))
        self.watch.attach(self._shared)
        return self._shared

    def close_shared(self) -> None:
        """Stop the shared product (before a benchmark that starts its own)."""
        self.watch.attach(None)
        self._shared_exit.close()
        self._shared = None

    @contextmanager
    def own_stack(self, label: str, seed: Callable[[Path], object] | None = None) -> Iterator[Stack]:
        """A product for one benchmark alone, the shared one stopped meanwhile."""
        self.close_shared()
        with running_stack(self.broker_url, label, seed) as stack:
            self.watch.attach(stack)
            try:
                yield stack
            finally:
                self.watch.attach(None)
