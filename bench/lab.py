"""What every benchmark gets: the plan, the broker, the memory watch, the variants, and the products.

Benchmarks that only read and write through the API share one product per variant (started on first
use, side by side: an idle product takes next to no CPU, and alternating runs between them puts both
under the same machine state); those that need a given number of tasks in the store before start-up,
or a clean slate, get their own (listing, split, soak), the shared ones stopped meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass, field

from bench.memory import MemoryWatch
from bench.plan import Plan
from bench.stack import StackError, running_stack
from bench.variants import DEFAULT_VARIANTS, Variant
from testing.stack import Stack

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class StackSpec:
    """A product to start: its backend, its extra settings, what to write into its store first."""

    backend: str = "files"
    env: dict[str, str] = field(default_factory=dict)
    seed: Callable[[Stack], object] | None = None


def start_all(exits: ExitStack, starting: Mapping[str, AbstractContextManager[Stack]]) -> dict[str, Stack]:
    """Enter every product's context at once (starting is mostly waiting), each exit pushed on `exits`;
    the first failure is raised once all have finished starting (the started ones stop with `exits`)."""
    with ThreadPoolExecutor(max(1, len(starting))) as pool:
        futures = {name: pool.submit(cm.__enter__) for name, cm in starting.items()}
    started: dict[str, Stack] = {}
    error: BaseException | None = None
    for name, future in futures.items():
        try:
            started[name] = future.result()
        except BaseException as exc:  # noqa: BLE001 - the first one is raised below
            error = error or exc
            continue
        exits.push(starting[name].__exit__)
    if error is not None:
        raise error
    return started


@dataclass
class Lab:
    """Shared context of one `python -m bench` invocation."""

    plan: Plan
    broker_url: str
    watch: MemoryWatch
    variants: tuple[Variant, ...] = DEFAULT_VARIANTS
    _shared: dict[str, Stack] = field(default_factory=dict)
    _shared_exit: ExitStack = field(default_factory=ExitStack)
    _own: dict[str, Stack] = field(default_factory=dict)
    _failed: dict[str, str] = field(default_factory=dict)  # variant -> why its shared product did not start

    @property
    def baseline(self) -> Variant:
        """The variant every other is compared with (the first)."""
        return self.variants[0]

    def shared_stacks(self) -> dict[str, Stack]:
        """One product per variant, by variant name, shared by the API benchmarks; started on first use."""
        for variant in self.variants:
            if variant.name in self._failed:  # one wait for a product that cannot start is enough
                raise StackError(f"the {variant.name} product did not start earlier: {self._failed[variant.name]}")
        missing = {
            v.name: running_stack(self.broker_url, f"shared-{v.name}", backend=v.backend, env=v.env)
            for v in self.variants
            if v.name not in self._shared
        }
        try:
            self._shared.update(start_all(self._shared_exit, missing))
        except StackError as exc:
            for name in missing:
                self._failed.setdefault(name, str(exc))
            raise
        self.watch.attach(self._shared)
        return dict(self._shared)

    def shared_stack(self) -> Stack:
        """The baseline variant's shared product (the others are started too, to be watched alike)."""
        return self.shared_stacks()[self.baseline.name]

    def running(self) -> list[Stack]:
        """Every product running now (an idle one's CPU is ours, not another process's)."""
        return [*self._shared.values(), *self._own.values()]

    def close_shared(self) -> None:
        """Stop the shared products (before a benchmark that starts its own)."""
        self.watch.attach(None)
        self._shared_exit.close()
        self._shared.clear()

    @contextmanager
    def own_stacks(self, label: str, specs: Mapping[str, StackSpec]) -> Iterator[dict[str, Stack]]:
        """Products for one benchmark alone, by name, side by side; the shared ones stopped meanwhile."""
        self.close_shared()
        with ExitStack() as stacks:
            self._own.update(
                start_all(
                    stacks,
                    {
                        name: running_stack(self.broker_url, f"{label}-{name}", spec.seed, spec.backend, spec.env)
                        for name, spec in specs.items()
                    },
                )
            )
            self.watch.attach(self._own)
            try:
                yield dict(self._own)
            finally:
                self.watch.attach(None)
                self._own.clear()

    @contextmanager
    def own_stack(self, label: str, seed: Callable[[Stack], object] | None = None) -> Iterator[Stack]:
        """One product of the files backend for one benchmark alone, its roles unlabelled."""
        self.close_shared()
        with running_stack(self.broker_url, label, seed) as stack:
            self._own[label] = stack
            self.watch.attach(stack)
            try:
                yield stack
            finally:
                self.watch.attach(None)
                self._own.clear()
