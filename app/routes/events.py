"""Live updates as server-sent events: one task, and the task list with the compute host.

Both streams are fed by shared poll loops (app/feeds.py) that ask the Thrift server every
250 ms while anyone watches, and send only what changed. Every stream starts with a `retry:`
line and the current state at once, so a client that reconnects (with or without Last-Event-ID)
is up to date immediately; a comment every 15 s keeps idle connections open (app/sse.py).

    GET /task/{id}/events   event `task` (a TaskModel) on every change; after the final state
                            (SUCCESS, FAILURE, REVOKED) the stream ends. Reconnecting with the
                            Last-Event-ID of that final event answers 204, which tells a browser's
                            EventSource to stop. Event `gone` (and the end) if the task is deleted.
    GET /alltasks/events    event `tasks` (a TaskPage) whenever any task on the page changes, and
                            event `host` (a HostModel) every second.

Either stream sends event `unavailable` ({"detail": ...}) while the compute side cannot be
reached, and resumes with the state once it can. The events' schemas are in app/event_models.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Query, Response

from app import sse
from app.contract import Status
from app.deps import HubDep, TaskIdPath, ThriftDep, task_id_or_404
from app.event_models import ListStream, TaskStream, stream_response
from app.feeds import Feed, FeedHub, Listener
from app.models import ErrorResponse
from app.snapshots import Snapshot, fetch_host, fetch_page, fetch_task

#: Seconds between two polls of one task or one page (shared by every client watching it).
POLL_INTERVAL = 0.25
#: Seconds between two polls of the host's state.
HOST_INTERVAL = 1.0
#: Milliseconds a browser waits before reconnecting.
RETRY_MS = 1500
#: Largest page a list stream sends: every change re-sends the whole page.
MAX_STREAM_PAGE = 100

router = APIRouter(tags=["events"])

LastEventId = Annotated[
    str | None, Header(description="Sent by a reconnecting EventSource: the id of the last event it got")
]

_EXAMPLE = (
    "retry: 1500\n\nevent: task\nid: 3f0c2a9d1b7e4c55\n"
    'data: {"id":"5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c","status":"PROGRESS","progress":41.5,...}\n\n'
)
# Errors are JSON, answered before any stream starts. (response_class=Response below keeps FastAPI
# from adding a `schema` of its own beside the events' `itemSchema`.)
_UNAVAILABLE = {
    "model": ErrorResponse,
    "description": "Too many event streams are open, or the compute service is unavailable",
}
_MALFORMED = {"model": ErrorResponse, "description": "A parameter is out of range"}


@router.get(
    "/task/{id}/events",
    response_class=Response,
    status_code=200,
    summary="Follow one task (server-sent events)",
    responses={
        200: stream_response(TaskStream, _EXAMPLE),
        422: _MALFORMED,
        503: _UNAVAILABLE,
        204: {"description": "The task had ended and the client has its final state"},
        404: {"model": ErrorResponse, "description": "No task with this id"},
    },
)
async def task_events(
    task_id: TaskIdPath, hub: HubDep, thrift: ThriftDep, last_event_id: LastEventId = None
) -> Response:
    """Event `task` with the task's state at once and on every change; the stream ends after its final state."""
    task_id = task_id_or_404(task_id)
    listener = _open(hub)
    try:
        feed = listener.watch(("task", task_id), partial(fetch_task, thrift, task_id), POLL_INTERVAL)
        first = await _first(feed)
        if first.final and first.id is not None and first.id == last_event_id:
            listener.close()
            return Response(status_code=204)
    except BaseException:
        listener.close()
        raise
    return sse.EventStream(_events(listener), on_close=listener.close, shutdown=hub.stopping)


@router.get(
    "/alltasks/events",
    response_class=Response,
    status_code=200,
    summary="Follow the task list and the host (server-sent events)",
    responses={200: stream_response(ListStream, _EXAMPLE), 422: _MALFORMED, 503: _UNAVAILABLE},
)
async def list_events(
    hub: HubDep,
    thrift: ThriftDep,
    limit: Annotated[int, Query(ge=1, le=MAX_STREAM_PAGE, description="Tasks per page")] = 10,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Tasks to skip")] = 0,
    status: Annotated[Status | None, Query(description="Only tasks with this status")] = None,
) -> Response:
    """Event `tasks` with the page (newest first) at once and whenever it changes; event `host` every second."""
    listener = _open(hub)
    try:
        page = listener.watch(
            ("page", offset, limit, status), partial(fetch_page, thrift, offset, limit, status), POLL_INTERVAL
        )
        listener.watch(("host",), partial(fetch_host, thrift), HOST_INTERVAL)
        await _first(page)
    except BaseException:
        listener.close()
        raise
    return sse.EventStream(_events(listener), on_close=listener.close, shutdown=hub.stopping)


def _open(hub: FeedHub) -> Listener:
    listener = hub.open()
    if listener is None:
        raise HTTPException(
            503,
            f"too many event streams are open (at most {hub.max_streams}); try again shortly",
            headers={"Retry-After": "5"},
        )
    return listener


async def _first(feed: Feed) -> Snapshot:
    """The feed's current state, or the HTTP error the stream's client gets instead of a stream."""
    first = await feed.first()
    if first.event == "gone":
        raise HTTPException(404, first.detail)
    if first.event == "unavailable":
        raise HTTPException(503, first.detail, headers={"Retry-After": "5"})
    return first


async def _events(listener: Listener) -> AsyncIterator[bytes]:
    yield sse.retry(RETRY_MS)
    async for snapshot in listener.changes():
        yield sse.event(snapshot.data, name=snapshot.event, event_id=snapshot.id)
