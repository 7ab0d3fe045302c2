"""Server-sent events: the wire format, and a response that stops the moment its client goes away.

Why not FastAPI's generator endpoints (fastapi.sse.EventSourceResponse): a route here must answer
404, 503 or 204 before any stream starts, after a first look at the state, and then hand that same
subscription to the stream; a plain route returning an EventStream says so directly. And why not a
bare StreamingResponse: it notices a departed client only on its next write under ASGI 2.4, and
an event stream may stay silent for seconds, so EventStream always listens for `http.disconnect`
beside the stream and cancels it at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping

from starlette.responses import Response
from starlette.types import Receive, Scope, Send


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


def comment(text: str) -> bytes:
    """A comment line: ignored by clients, keeps proxies and idle timers from closing the stream."""
    return f": {_one_line(text)}\n\n".encode()


def _one_line(value: str) -> str:
    if "\n" in value or "\r" in value:
        raise ValueError(f"an event field cannot span lines: {value!r}")
    return value


class EventStream(Response):
    """A `text/event-stream` response of the chunks `events` yields; `on_close` runs however it ends."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[bytes], *, on_close: Callable[[], None] = lambda: None,
                 headers: Mapping[str, str] | None = None) -> None:
        self.events = events
        self.on_close = on_close
        self.status_code = 200
        self.background = None
        # No caching, and no buffering by a proxy (nginx honours X-Accel-Buffering).
        self.init_headers({"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            streaming = asyncio.create_task(self._stream(send))
            watching = asyncio.create_task(self._until_disconnect(receive))
            try:
                await asyncio.wait((streaming, watching), return_when=asyncio.FIRST_COMPLETED)
            finally:
                streaming.cancel()
                watching.cancel()
                outcome, _ = await asyncio.gather(streaming, watching, return_exceptions=True)
        finally:
            self.on_close()
        if isinstance(outcome, Exception):
            raise outcome

    async def _stream(self, send: Send) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        try:
            async for chunk in self.events:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        finally:
            await _aclose(self.events)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    @staticmethod
    async def _until_disconnect(receive: Receive) -> None:
        while (await receive())["type"] != "http.disconnect":
            pass


async def _aclose(events: AsyncIterator[bytes]) -> None:
    close = getattr(events, "aclose", None)
    if close is not None:
        await close()
