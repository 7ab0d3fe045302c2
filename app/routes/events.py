"""Live updates as server-sent events: one task, and the task list with the compute host.

Both streams are fed by shared poll loops (app/feeds.py) that ask the Thrift server every
250 ms while anyone watches, and send only what changed. Every stream starts with a `retry:`
line and the current state at once, so a client that reconnects (with or without Last-Event-ID)
is up to date immediately; a comment every 15 s keeps idle connections open.

    GET /task/{id}/events   event `task` (a TaskModel) on every change; after the final state
                            (SUCCESS, FAILURE, REVOKED) the stream ends. Reconnecting with the
                            Last-Event-ID of that final event answers 204, which tells a browser's
                            EventSource to stop. Event `gone` (and the end) if the task is deleted.
    GET /alltasks/events    event `tasks` (the page: total, offset, limit, status, tasks) whenever
                            any task on it changes, and event `host` (a HostModel) every second.

Either stream sends event `unavailable` ({"detail": ...}) while the compute side cannot be
reached, and resumes with the state once it can.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request, Response

from app import sse
from app.deps import ThriftDep
from app.errors import ComputeFailed, ComputeUnavailable
from app.feeds import Feed, FeedHub, Listener, Snapshot
from app.models import HostModel, TaskModel
from app.routes.tasks import TaskId, check_task_id
from app.thrift_client import ThriftPool
from RPC.ttypes import BadTask, Unavailable

log = logging.getLogger(__name__)

#: Seconds between two polls of one task or one page (shared by every client watching it).
POLL_INTERVAL = 0.25
#: Seconds between two polls of the host's state.
HOST_INTERVAL = 1.0
#: Seconds of silence after which a stream sends a keep-alive comment.
KEEPALIVE = 15.0
#: Milliseconds a browser waits before reconnecting.
RETRY_MS = 1500
#: Event streams open at once; one more is answered 503.
MAX_STREAMS = 200
#: Largest page a list stream sends.
MAX_STREAM_PAGE = 100
FINAL = ("SUCCESS", "FAILURE", "REVOKED")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.feeds = hub = FeedHub(MAX_STREAMS)
    restore = _close_streams_on_exit_signals(hub)
    try:
        yield
    finally:
        restore()
        hub.close()


router = APIRouter(tags=["events"], lifespan=lifespan)


async def get_hub(request: Request) -> FeedHub:  # async: no thread hop (see app/deps.py)
    return request.app.state.feeds


HubDep = Annotated[FeedHub, Depends(get_hub)]
LastEventId = Annotated[str | None,
                        Header(description="Sent by a reconnecting EventSource: the id of the last event it got")]

_EXAMPLE = (
    "retry: 1500\n\nevent: task\nid: 3f0c2a9d1b7e4c55\n"
    'data: {"id":"5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c","status":"PROGRESS","progress":41.5,...}\n\n'
)


def _event(names: list[str], data: dict[str, Any]) -> dict[str, Any]:
    """The schema of one event (OpenAPI 3.2 `itemSchema`): its name, and its data as JSON of `data`'s schema."""
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": names},
            "id": {"type": "string"},
            "data": {"type": "string", "contentMediaType": "application/json", "contentSchema": data},
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_PROBLEM = _event(["unavailable", "gone"], _ref("ErrorResponse"))
_PAGE = {
    "type": "object",
    "required": ["total", "offset", "limit", "status", "tasks"],
    "properties": {
        "total": {"type": "integer", "description": "Tasks that match the filter in all"},
        "offset": {"type": "integer"},
        "limit": {"type": "integer"},
        "status": {"anyOf": [{"type": "string"}, {"type": "null"}]},
        "tasks": {"type": "array", "items": _ref("TaskModel"), "description": "The page, newest first"},
    },
}


def _stream(*kinds: dict[str, Any]) -> dict[str, Any]:
    return {"description": "An event stream", "content": {
        "text/event-stream": {"itemSchema": {"oneOf": [*kinds, _PROBLEM]}, "example": _EXAMPLE}}}


# Errors are JSON, answered before any stream starts. (response_class=Response below keeps FastAPI
# from adding a `schema` of its own beside the events' `itemSchema`.)
_ERROR = {"application/json": {"schema": _ref("ErrorResponse")}}
_UNAVAILABLE = {"description": "Too many event streams are open, or the compute service is unavailable",
                "content": _ERROR}
_MALFORMED = {"description": "A parameter is out of range", "content": _ERROR}


@router.get("/task/{id}/events", response_class=Response, status_code=200,
            summary="Follow one task (server-sent events)",
            responses={200: _stream(_event(["task"], _ref("TaskModel"))), 422: _MALFORMED, 503: _UNAVAILABLE,
                       204: {"description": "The task had ended and the client has its final state"},
                       404: {"description": "No task with this id", "content": _ERROR}})
async def task_events(id: TaskId, hub: HubDep, thrift: ThriftDep,  # noqa: A002 - the URL's name
                      last_event_id: LastEventId = None) -> Response:
    """Event `task` with the task's state at once and on every change; the stream ends after its final state."""
    task_id = check_task_id(id)
    listener = _open(hub)
    try:
        feed = listener.watch(("task", task_id), partial(_fetch_task, thrift, task_id), POLL_INTERVAL)
        first = await _first(feed)
        if first.final and first.id is not None and first.id == last_event_id:
            listener.close()
            return Response(status_code=204)
    except BaseException:
        listener.close()
        raise
    return sse.EventStream(_events(listener, [feed]), on_close=listener.close)


@router.get("/alltasks/events", response_class=Response, status_code=200,
            summary="Follow the task list and the host (server-sent events)",
            responses={200: _stream(_event(["tasks"], _PAGE), _event(["host"], _ref("HostModel"))),
                       422: _MALFORMED, 503: _UNAVAILABLE})
async def list_events(
    hub: HubDep,
    thrift: ThriftDep,
    limit: Annotated[int, Query(ge=1, le=MAX_STREAM_PAGE, description="Tasks per page")] = 10,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Tasks to skip")] = 0,
    status: Annotated[Literal["WAITING", "PROGRESS", "SUCCESS", "FAILURE", "REVOKED"] | None,
                      Query(description="Only tasks with this status")] = None,
) -> Response:
    """Event `tasks` with the page (newest first) at once and whenever it changes; event `host` every second."""
    listener = _open(hub)
    try:
        page = listener.watch(("page", offset, limit, status), partial(_fetch_page, thrift, offset, limit, status),
                              POLL_INTERVAL)
        host = listener.watch(("host",), partial(_fetch_host, thrift), HOST_INTERVAL)
        await _first(page)
    except BaseException:
        listener.close()
        raise
    return sse.EventStream(_events(listener, [page, host]), on_close=listener.close)


def _open(hub: FeedHub) -> Listener:
    listener = hub.open()
    if listener is None:
        raise HTTPException(503, f"too many event streams are open (at most {hub.max_streams}); try again shortly",
                            headers={"Retry-After": "5"})
    return listener


async def _first(feed: Feed) -> Snapshot:
    """The feed's current state, or the HTTP error the stream's client gets instead of a stream."""
    first = await feed.first()
    if first.event == "gone":
        raise HTTPException(404, first.detail)
    if first.event == "unavailable":
        raise HTTPException(503, first.detail, headers={"Retry-After": "5"})
    return first


async def _events(listener: Listener, feeds: list[Feed]) -> AsyncIterator[bytes]:
    yield sse.retry(RETRY_MS)
    sent = [0] * len(feeds)
    while True:
        listener.wake.clear()
        for i, feed in enumerate(feeds):
            snapshot = feed.snapshot
            if snapshot is None or feed.version == sent[i]:
                continue
            sent[i] = feed.version
            yield sse.event(snapshot.data, name=snapshot.event, event_id=snapshot.id)
            if snapshot.final:
                return
        if listener.hub.closing:
            return
        if not await listener.wait(KEEPALIVE):
            yield sse.comment("keep-alive")


async def _fetch_task(thrift: ThriftPool, task_id: str) -> Snapshot:
    try:
        task = TaskModel.from_thrift(await thrift.call("getTaskStatus", task_id))
    except BadTask as exc:
        return Snapshot.problem("gone", exc.message, final=True)
    except (ComputeUnavailable, ComputeFailed, Unavailable) as exc:
        return _unavailable(exc)
    return Snapshot.state("task", task.model_dump_json(), final=task.status in FINAL)


async def _fetch_page(thrift: ThriftPool, offset: int, limit: int, status: str | None) -> Snapshot:
    try:
        page = await thrift.call("listTaskPage", offset, limit, status or "")
    except (ComputeUnavailable, ComputeFailed, Unavailable) as exc:
        return _unavailable(exc)
    tasks = [TaskModel.from_thrift(r).model_dump(mode="json") for r in page.tasks]
    body = {"total": page.total, "offset": offset, "limit": limit, "status": status, "tasks": tasks}
    return Snapshot.state("tasks", json.dumps(body, separators=(",", ":")))


async def _fetch_host(thrift: ThriftPool) -> Snapshot:
    try:
        host = HostModel.from_thrift(await thrift.call("getHostStatus"))
    except (ComputeUnavailable, ComputeFailed, Unavailable) as exc:
        return _unavailable(exc)
    return Snapshot("host", host.model_dump_json())  # no id: the host is no state to resume


def _unavailable(exc: Exception) -> Snapshot:
    return Snapshot.problem("unavailable", exc.message if isinstance(exc, Unavailable) else str(exc))


def _close_streams_on_exit_signals(hub: FeedHub) -> Callable[[], None]:
    """End the streams as soon as SIGINT/SIGTERM arrives; returns the function that undoes it.

    uvicorn waits up to timeout_graceful_shutdown for open responses before it stops, and an event
    stream never ends by itself: without this, every restart with a dashboard open would hang 5 s and
    then cancel the streams. The server's own handler still runs after ours.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    installed: dict[int, tuple[Any, Any]] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue  # default or ignored: nobody shuts down gracefully, so there is nothing to hurry

        def handler(signum: int, frame: Any, previous: Callable[[int, Any], Any] = previous) -> None:
            loop.call_soon_threadsafe(hub.close)
            previous(signum, frame)

        signal.signal(sig, handler)
        installed[sig] = (handler, previous)

    def restore() -> None:
        for sig, (handler, previous) in installed.items():
            if signal.getsignal(sig) is handler:
                signal.signal(sig, previous)

    return restore
