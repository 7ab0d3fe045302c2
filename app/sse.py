"""Server-sent events: the wire format, and the response (sse-starlette's EventSourceResponse).

sse-starlette does the response's work. It listens for `http.disconnect` beside the stream and
cancels the stream the moment its client leaves (a bare StreamingResponse would notice only at its
next write, and a stream may stay silent for seconds); it sends a keep-alive comment every
KEEPALIVE seconds; and it notices the server shutting down (it hooks uvicorn's SIGINT/SIGTERM
handler and checks every 0.5 s) by setting the `shutdown` event it was given, then cancels the
stream SHUTDOWN_GRACE seconds later unless the stream has ended by itself.

The app's lifespan (app/main.py) makes the streams end by themselves: measured with 20 task streams
open, SIGTERM ended every one as a complete response within 0.25-0.51 s (that 0.5 s check), and the
server exited within 0.34-0.59 s. Cancelled instead, the same 20 were cut short after 1.5 s, each
costing uvicorn an error "ASGI callable returned without completing response.", and each client an
incomplete chunked body.

Two things stay ours. The encoding of events: a field that spans lines is refused here rather than
quietly joined as sse-starlette's ServerSentEvent does, since it can only come from a bug. And
`on_close`, run however the response ends: sse-starlette calls back on a client's disconnect only,
and runs `background` only after a normal end, while a stream's slot must be given back in every case.

Why not FastAPI's generator endpoints (fastapi.sse): a route here must answer 404, 503 or 204
before any stream starts, after a first look at the state, and then hand that same subscription to
the stream; a plain route returning an EventStream says so directly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.types import Receive, Scope, Send

#: Seconds between two keep-alive comments: they keep proxies and idle timers from closing a quiet stream.
KEEPALIVE = 15.0
#: Seconds a stream has to end by itself once the server shuts down, before it is cancelled.
SHUTDOWN_GRACE = 1.0


def event(data: str, *, name: str | None = None, event_id: str | None = None) -> bytes:
    """One event: `event:` and `id:` lines when given, one `data:` line per line of `data`."""
    lines = []
    if name is not None:
        lines.append(f"event: {_one_line(name)}")
    if event_id is not None:
        lines.append(f"id: {_one_line(event_id)}")
    lines.extend(f"data: {line}" for line in data.splitlines() or [""])
    return ("\n".join(lines) + "\n\n").encode()


def retry(milliseconds: int) -> bytes:
    """Tells the browser how long to wait before it reconnects."""
    return f"retry: {int(milliseconds)}\n\n".encode()


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an event field cannot span lines: {value!r}")
    return value


def keepalive() -> ServerSentEvent:
    """The comment sent every KEEPALIVE seconds: ignored by clients."""
    return ServerSentEvent(comment="keep-alive", sep="\n")


class EventStream(EventSourceResponse):
    """A `text/event-stream` response of the chunks `events` yields; `on_close` runs however it ends.

    `shutdown` is set when the server begins to shut down; `events` should then end (within
    SHUTDOWN_GRACE seconds, or it is cancelled).
    """

    def __init__(
        self,
        events: AsyncIterator[bytes],
        *,
        on_close: Callable[[], None] = lambda: None,
        shutdown: anyio.Event | None = None,
    ) -> None:
        # The Cache-Control this API has always sent (sse-starlette's own is no-store).
        super().__init__(
            events,
            headers={"Cache-Control": "no-cache"},
            sep="\n",
            ping=KEEPALIVE,
            ping_message_factory=keepalive,
            shutdown_event=shutdown,
            shutdown_grace_period=SHUTDOWN_GRACE,
        )
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.on_close()
