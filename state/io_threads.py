"""IOThreads: blocking calls run off the event loop on a few threads, handed over in batches.

Why not `loop.run_in_executor(ThreadPoolExecutor(...))`: it pays a thread wake-up and a wake-up of
the loop (a write to its self-pipe) for every call, and with several threads the loop and the woken
threads take turns at the GIL several times a call; on a VM each wake-up of another thread is also
an interrupt to another core. Here the calls a loop makes in one pass go over together with at most
one wake-up, a thread that wakes takes every call waiting, and the results go back to each loop in
one wake-up; under load calls arrive while a thread is busy and nobody needs waking. Measured side
by side on the Thrift server (files backend, 2-core VM, 6 alternating runs each, medians), against
an 8-thread ThreadPoolExecutor: starts 1,318 -> 1,555/s with its CPU per start 0.53 -> 0.43 ms;
status reads of 64 waiting tasks at 50 connections, its CPU per read 0.090 -> 0.072 ms.

One thread does the work while it keeps up. Another is woken only once the batch running has taken
longer than `slow` (a disk that stalls, a listing reading many files): a call waits behind a slow
batch for `slow` plus the call then running at most, not for the whole batch. A long batch also
hands back what it has done every `slow`. `slow` is 20 ms, not 1 ms: this VM's disk often takes
over 1 ms for a few file creations in a row, and every extra thread woken then costs a wake-up and
a GIL hand-over more per call. Starts on the Thrift server (files backend, worker stopped, 10
connections, 8 alternating rounds, medians, Xeon 2-core KVM): its CPU per start 0.76 ms with 1 ms,
0.67 ms with 20 ms, 0.69 ms with a single thread and 0.66 ms for the product that wrote on its loop
(commit a7612f0); starts 894, 929, 964 and 967/s.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

#: How long a batch may run before calls waiting behind it wake another thread (seconds).
SLOW = 0.02

# One call handed over: what to run, with what, and the future (on its loop) for the outcome.
_Call = tuple[Callable[..., Any], tuple[Any, ...], "asyncio.Future[Any]"]
_Outcome = tuple["asyncio.Future[Any]", Any, Exception | None]


class IOThreads:
    """A few daemon threads that run blocking calls for coroutines. Safe to share between loops."""

    def __init__(self, threads: int, name: str, *, slow: float = SLOW) -> None:
        if threads < 1:
            raise ValueError("IOThreads needs at least one thread")
        self.slow = slow
        self._waiting: deque[_Call] = deque()
        self._lock = threading.Lock()
        # An idle thread waits here for a wake-up: a SimpleQueue (C) costs the loop's thread a
        # fraction of what threading.Condition's notify (Python) did, which took 39% of the Thrift
        # server's GIL-holding time under status reads (py-spy --gil).
        self._wakeups: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._idle = 0  # threads waiting for work
        self._woken = 0  # of them, notified and not yet running
        self._running: dict[int, float] = {}  # thread number -> when its batch started
        self._wake_after: set[asyncio.AbstractEventLoop] = set()  # loops that will wake a thread soon
        self._closed = False
        self._threads = [
            threading.Thread(target=self._serve, args=(i,), name=f"{name}-{i}", daemon=True) for i in range(threads)
        ]
        for thread in self._threads:
            thread.start()

    async def run(self, call: Callable[..., T], *args: object) -> T:
        """call(*args) on one of the threads; its result, or its exception raised here."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("IOThreads is shut down")
            self._waiting.append((call, args, future))
            if loop not in self._wake_after:
                # Woken once the loop has run what is ready now: the calls that its other callbacks
                # (requests read in the same pass) make meanwhile go over with this one.
                self._wake_after.add(loop)
                loop.call_soon(self._wake, loop)
        return await future

    def shutdown(self) -> None:
        """Let the threads finish what is waiting, then stop them (and wait for them)."""
        with self._lock:
            self._closed = True
        for _ in self._threads:
            self._wakeups.put(None)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join()

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._wake_after.discard(loop)
            self._wake_one_if_needed()

    def _wake_one_if_needed(self) -> None:
        """Holding the lock: wake an idle thread, unless a batch that started less than `slow` ago
        will take what is waiting soon enough, or one is already on its way."""
        if self._idle <= self._woken:
            return
        now = time.monotonic()
        if any(now - started < self.slow for started in self._running.values()):
            return
        self._woken += 1
        self._wakeups.put(None)

    def _serve(self, number: int) -> None:
        while True:
            with self._lock:
                idle = not self._waiting
                if idle:
                    if self._closed:
                        return  # and nothing left to run
                    self._idle += 1
                else:
                    batch = list(self._waiting)
                    self._waiting.clear()
                    self._running[number] = flushed = time.monotonic()
            if idle:
                self._wakeups.get()  # a wake-up put before we got here counts as well
                with self._lock:
                    self._idle -= 1
                    self._woken = max(0, self._woken - 1)
                continue
            done: list[_Outcome] = []
            for call, args, future in batch:
                try:
                    done.append((future, call(*args), None))
                except Exception as exc:  # noqa: BLE001 - any error is the caller's: raised where it awaits
                    done.append((future, None, exc))
                if time.monotonic() - flushed > self.slow:
                    # A long batch: hand back what is done, and let others take what waits behind it.
                    _settle_soon(done)
                    done, flushed = [], time.monotonic()
                    if self._waiting:  # (a peek: the lock is taken only to wake)
                        with self._lock:
                            self._wake_one_if_needed()  # this batch started over `slow` ago
            with self._lock:
                del self._running[number]
            _settle_soon(done)


def _settle_soon(done: list[_Outcome]) -> None:
    """Have each future's loop set its outcome: one wake-up of each loop for the lot."""
    by_loop: dict[asyncio.AbstractEventLoop, list[_Outcome]] = {}
    for outcome in done:
        by_loop.setdefault(outcome[0].get_loop(), []).append(outcome)
    for loop, outcomes in by_loop.items():
        with contextlib.suppress(RuntimeError):  # that loop is closed: nobody waits for these any more
            loop.call_soon_threadsafe(_settle, outcomes)


def _settle(outcomes: list[_Outcome]) -> None:
    for future, result, exc in outcomes:
        if future.done():  # its caller was cancelled meanwhile
            continue
        if exc is None:
            future.set_result(result)
        else:
            future.set_exception(exc)
