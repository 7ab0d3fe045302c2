"""Free ports and waiting for things, for tests and benchmarks alike."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Something did not happen in time. An AssertionError, so that pytest reports it as a failure."""


#: Every port free_port has handed out in this process: the kernel picks bind(0)'s port at random
#: and may pick one again before the process it was meant for has bound it.
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now, never the same one twice in a process
    (a stack takes five at once, and two of them equal would leave one of its listeners unable to bind)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port: int = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def wait_for(check: Callable[[], T | None], timeout: float, what: str, interval: float = 0.05) -> T:
    """Poll `check` until it returns something truthy, and return that; WaitTimeout naming `what`
    after `timeout` seconds (with the last error `check` raised, if any)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - whatever the check raises is reported if the wait fails
            last_error = exc
        time.sleep(interval)
    raise WaitTimeout(
        f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last_error!r})" if last_error else "")
    )
