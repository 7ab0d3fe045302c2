"""Running a ThriftServer as a process: the event loop (uvloop where installed), signals, the port file."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext, suppress
from typing import Any

from tserver.runtime.limits import ServerLimits
from tserver.runtime.observer import CallObserver
from tserver.runtime.server import ThriftServer

log = logging.getLogger(__name__)

#: How long the thread holding the GIL keeps it while another waits (Python's default: 5 ms); see run().
SWITCH_INTERVAL = 0.0005


def run(
    processor: Any,
    host: str,
    port: int,
    limits: ServerLimits | None = None,
    *,
    port_file: str | None = None,
    ready: Callable[[int], Any] | None = None,
    resources: Callable[[], AbstractAsyncContextManager[Any]] | None = None,
    observer: CallObserver | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then close gracefully (blocking; for ``__main__``).

    Uses uvloop when it is importable. ``resources()``, if given, is entered on the server's loop
    before it listens and left after it closed: what the handler needs on that loop (connections to
    the broker and the state store, housekeeping). Once listening, writes the bound port to
    ``port_file`` (atomically) and calls ``ready(port)``. ``observer`` is told of every call.
    """
    # The loop hands disk work to the catalog's threads, and each of them must take the GIL back from
    # the busy loop after every system call: with Python's default 5 ms switch interval that wait
    # dominates. At 0.5 ms, measured side by side (4 alternating runs of each, files backend):
    # starts 1,158-1,300/s against 746-1,033/s, not-ended status reads 4,498/s against 4,218/s.
    sys.setswitchinterval(SWITCH_INTERVAL)
    loop_factory = None
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        pass
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(_serve(processor, host, port, limits or ServerLimits(), port_file, ready, resources, observer))


async def _serve(
    processor: Any,
    host: str,
    port: int,
    limits: ServerLimits,
    port_file: str | None,
    ready: Callable[[int], Any] | None,
    resources: Callable[[], AbstractAsyncContextManager[Any]] | None,
    observer: CallObserver | None,
) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            installed.append(signum)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    async with resources() if resources is not None else nullcontext():
        server = ThriftServer(processor, host, port, limits, observer=observer)
        try:
            await server.start()
            if port_file:
                _write_port_file(port_file, server.port)
            if ready is not None:
                ready(server.port)
            await stop.wait()
            log.info("signal received: closing the Thrift server")
        finally:
            for signum in installed:
                loop.remove_signal_handler(signum)
            await server.close()


def _write_port_file(path: str, port: int) -> None:
    """Write the port atomically: a reader sees no file or the whole number."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".port-", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(f"{port}\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
