"""Connection: one client connection of the Thrift server, as an asyncio protocol.

It cuts the bytes into messages (framing.py), runs its calls one at a time and answers them in
order; while a call runs, at most one further complete message is buffered and reading is paused,
so a pipelining client cannot make the server buffer without bound. Timeouts: a connection idle
for ``idle_timeout`` and a message not complete within ``message_timeout`` are closed, with one
lazily re-armed timer per connection (not one per message).
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from typing import TYPE_CHECKING, Any, cast

from tserver.runtime.dispatch import DECODE_ERRORS
from tserver.runtime.framing import Framing, FramingError
from tserver.runtime.request import Request

if TYPE_CHECKING:
    from tserver.runtime.server import ThriftServer

log = logging.getLogger(__name__)


class Connection(asyncio.Protocol):
    """One client connection: sniffs the framing, cuts messages, runs them one at a time."""

    def __init__(self, server: ThriftServer) -> None:
        self._server = server
        self._limits = server.limits
        self._loop = server.loop
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._buf = bytearray()
        self._framing = Framing(self._limits)
        self._pending: collections.deque[Request] = collections.deque()
        self._busy = False
        self._reading_paused = False
        self._writing_paused = False
        self._closed = False
        self._registered = False
        self._half_closed = False
        # Timeouts: one lazily re-armed timer per connection (not one per message).
        self._last_activity = 0.0
        self._msg_deadline: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0

    # -- asyncio.Protocol -------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is no subclass, but has its methods
        self._peer = transport.get_extra_info("peername")
        server = self._server
        if server.closing:
            self._closed = True
            self._transport.abort()
            return
        if not server.admit(self, self._peer):  # max_connections reached
            self._closed = True
            self._transport.close()
            return
        self._registered = True
        self._last_activity = self._loop.time()
        self._arm(self._last_activity + self._limits.idle_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        self._pending.clear()
        self._buf = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._registered:
            self._registered = False
            self._server.release(self)

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        self._buf += data
        self._parse()

    def eof_received(self) -> bool | None:
        # The client half-closed. With a call running, keep the write side open so that its reply
        # (and those of complete messages already buffered) still go out; _call_done closes after.
        # A partial message can never complete and is dropped.
        if self._busy:
            self._half_closed = True
            self._buf = bytearray()
            self._msg_deadline = None
            return True
        return None

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        if not self._closed and not self._busy:
            self._next()

    # -- message cutting --------------------------------------------------------------------------

    def _parse(self) -> None:
        buf = self._buf
        while not self._closed and not self._pending:
            if not buf:
                self._msg_deadline = None
                return
            try:
                message = self._framing.cut(buf)
            except FramingError as exc:
                self._server.rejected()
                self._abandon(str(exc))
                return
            if message is None:
                self._message_started()
                return
            self._msg_deadline = None
            self._last_activity = self._loop.time()
            if self._busy or self._writing_paused:
                self._pending.append(message)
                self._pause_reading()
            else:
                self._dispatch(message)

    def _message_started(self) -> None:
        if self._msg_deadline is None:
            self._msg_deadline = self._loop.time() + self._limits.message_timeout
            self._arm(self._msg_deadline)

    def _pause_reading(self) -> None:
        if not self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = True
            self._transport.pause_reading()
        # the client is not to blame for the time its next message waits behind ours
        self._msg_deadline = None

    def _resume_reading(self) -> None:
        if self._reading_paused and self._transport is not None and not self._transport.is_closing():
            self._reading_paused = False
            self._transport.resume_reading()

    # -- calls ------------------------------------------------------------------------------------

    def _dispatch(self, request: Request) -> None:
        self._busy = True
        self._server.call(request).add_done_callback(functools.partial(self._call_done, request))

    def _call_done(self, request: Request, fut: asyncio.Future[bytes]) -> None:
        self._busy = False
        if fut.cancelled():
            self._close()
            return
        exc = fut.exception()
        if exc is not None:
            if isinstance(exc, DECODE_ERRORS):
                log.warning(
                    "closing connection from %s: bad request (or unwritable reply): %s: %s",
                    self._peer,
                    type(exc).__name__,
                    exc,
                )
            else:
                log.error("closing connection from %s: processor failed", self._peer, exc_info=exc)
            self._close()
            return
        if self._closed:
            return
        reply = fut.result()
        if reply:  # a ONEWAY call has no reply
            assert self._transport is not None
            self._transport.write(self._framing.wrap(reply, request))
        self._last_activity = self._loop.time()
        if self._server.closing or (self._half_closed and not self._pending):
            self._close()
            return
        self._arm(self._last_activity + self._limits.idle_timeout)
        self._next()

    def _next(self) -> None:
        """Not busy any more: run a buffered message, or read on."""
        if self._writing_paused:
            return  # resume_writing calls us again
        if self._pending:
            self._dispatch(self._pending.popleft())
        if not self._half_closed:
            self._resume_reading()
            self._parse()

    # -- timeouts and closing ---------------------------------------------------------------------

    def _arm(self, deadline: float) -> None:
        if self._closed:
            return
        if self._timer is None or deadline < self._timer_when:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = self._loop.call_at(deadline, self._on_timer)
            self._timer_when = deadline

    def _on_timer(self) -> None:
        self._timer = None
        if self._closed:
            return
        now = self._loop.time()
        deadlines = []
        if self._msg_deadline is not None:
            if now >= self._msg_deadline:
                log.info(
                    "closing connection from %s: message not complete within %.1f s",
                    self._peer,
                    self._limits.message_timeout,
                )
                self._close()
                return
            deadlines.append(self._msg_deadline)
        if not self._busy:  # a running call is not idleness
            idle_deadline = self._last_activity + self._limits.idle_timeout
            if now >= idle_deadline:
                log.debug("closing connection from %s: idle for %.1f s", self._peer, self._limits.idle_timeout)
                self._close()
                return
            deadlines.append(idle_deadline)
        if deadlines:
            self._arm(min(deadlines))

    def _abandon(self, reason: str) -> None:
        log.warning("closing connection from %s: %s", self._peer, reason)
        self._close()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._closed = True
        self._pending.clear()
        self._buf = bytearray()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def shutdown(self) -> None:
        """The server is closing: close now unless a call runs (then after its reply)."""
        if not self._busy:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()
