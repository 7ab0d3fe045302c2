"""IOThreads: blocking calls off the event loop, handed over in batches (state/io_threads.py)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest

from state.errors import StorageError
from state.io_threads import IOThreads


@pytest.fixture
def threads() -> Iterator[IOThreads]:
    pool = IOThreads(3, "test-io")
    yield pool
    pool.shutdown()


def test_results_and_errors_reach_the_caller(threads: IOThreads) -> None:
    def fail() -> None:
        raise StorageError("disk full")

    async def main() -> None:
        assert await threads.run(pow, 2, 10) == 1024
        with pytest.raises(StorageError, match="disk full"):
            await threads.run(fail)
        # Every kind of error a blocking call can raise comes back, the pool still serving after.
        with pytest.raises(ZeroDivisionError):
            await threads.run(divmod, 1, 0)
        assert await threads.run(str.upper, "ok") == "OK"

    asyncio.run(main())


def test_calls_run_off_the_loop_thread(threads: IOThreads) -> None:
    async def main() -> None:
        names = await asyncio.gather(*(threads.run(lambda: threading.current_thread().name) for _ in range(20)))
        assert threading.current_thread().name not in names
        assert all(name.startswith("test-io-") for name in names)

    asyncio.run(main())


def test_many_concurrent_calls_each_get_their_own_answer(threads: IOThreads) -> None:
    async def main() -> None:
        got = await asyncio.gather(*(threads.run(lambda i=i: i * i) for i in range(2_000)))
        assert got == [i * i for i in range(2_000)]

    asyncio.run(main())


def test_calls_waiting_together_are_run_as_one_batch() -> None:
    """While the one thread is busy, the calls that arrive are taken together, and their results
    come back to the loop in one wake-up (one callback), not one each."""
    pool = IOThreads(1, "test-io", slow=10.0)
    release = threading.Event()
    try:

        async def main() -> None:
            loop = asyncio.get_running_loop()
            wakeups = 0
            original = loop.call_soon_threadsafe

            def counting(*args: object, **kwargs: object) -> asyncio.Handle:
                nonlocal wakeups
                wakeups += 1
                return original(*args, **kwargs)  # type: ignore[arg-type]  # passes the same arguments on

            loop.call_soon_threadsafe = counting  # type: ignore[method-assign]  # counts the loop's wake-ups
            first = asyncio.ensure_future(pool.run(release.wait, 5))
            await asyncio.sleep(0.05)  # the thread is now blocked in the first call
            rest = [asyncio.ensure_future(pool.run(lambda i=i: i)) for i in range(50)]
            await asyncio.sleep(0.05)
            release.set()
            assert await first is True
            assert await asyncio.gather(*rest) == list(range(50))
            assert wakeups == 2, "the first call's result, then the 50 waiting behind it together"

        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown()


def test_a_slow_call_holds_up_others_only_briefly() -> None:
    """A call stuck on a slow disk: calls that come later are taken by another thread."""
    pool = IOThreads(2, "test-io", slow=0.01)
    release = threading.Event()
    try:

        async def main() -> None:
            stuck = asyncio.ensure_future(pool.run(release.wait, 10))
            await asyncio.sleep(0.05)
            started = time.monotonic()
            assert await asyncio.wait_for(pool.run(lambda: "fast"), 5) == "fast"
            assert time.monotonic() - started < 2.0, "waited for the stuck call"
            assert not stuck.done()
            release.set()
            assert await stuck is True

        asyncio.run(main())
    finally:
        release.set()
        pool.shutdown()


def test_a_cancelled_caller_leaves_the_others_served(threads: IOThreads) -> None:
    release = threading.Event()

    async def main() -> None:
        slow = asyncio.ensure_future(threads.run(release.wait, 5))
        await asyncio.sleep(0.02)
        slow.cancel()
        release.set()
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await threads.run(len, "abc") == 3

    asyncio.run(main())


def test_shutdown_finishes_what_waits_then_refuses_new_calls() -> None:
    pool = IOThreads(1, "test-io")
    done: list[int] = []

    async def main() -> None:
        futures = [asyncio.ensure_future(pool.run(done.append, i)) for i in range(10)]
        await asyncio.sleep(0)  # handed over
        await asyncio.to_thread(pool.shutdown)
        await asyncio.gather(*futures)
        with pytest.raises(RuntimeError, match="shut down"):
            await pool.run(len, "x")

    asyncio.run(main())
    assert done == list(range(10))
    assert not any(t.name.startswith("test-io") and t.is_alive() for t in threading.enumerate())


def test_no_threads_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one thread"):
        IOThreads(0, "test-io")


def test_callers_on_different_loops_are_answered_on_their_own(threads: IOThreads) -> None:
    answers: dict[str, object] = {}

    def on_own_loop(name: str) -> None:
        async def main() -> None:
            answers[name] = await threads.run(lambda: name.upper())

        asyncio.run(main())

    others = [threading.Thread(target=on_own_loop, args=(f"loop{i}",)) for i in range(4)]
    for t in others:
        t.start()
    for t in others:
        t.join(10)
    assert answers == {f"loop{i}": f"LOOP{i}" for i in range(4)}
