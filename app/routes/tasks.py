"""Pi calculations: start one, read one, list them."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Response

from app.contract import DEFAULT_MAX_DECIMAL, DEFAULT_PAGE, MAX_PAGE, MIN_DECIMAL, Status
from app.deps import SettingsDep, TaskIdPath, TaskReaderDep, ThriftDep, task_id_or_404
from app.logs import bind_task
from app.models import ErrorResponse, TaskCreated, TaskModel, task_json
from RPC.ttypes import BadDecimal, BadTask, TaskFinished

router = APIRouter(tags=["tasks"])
log = logging.getLogger(__name__)

_START_RESPONSES: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse, "description": "decimal is not an integer in the allowed range"},
    503: {"model": ErrorResponse, "description": "The compute service or the task queue is unavailable"},
}
# The upper bound is a setting: app/main.py writes MAX_DECIMAL into the OpenAPI schema.
DecimalPath = Annotated[
    int,
    Path(
        description=f"Number of decimals of pi, from {MIN_DECIMAL} to MAX_DECIMAL ({DEFAULT_MAX_DECIMAL} by default)",
        examples=[6],
    ),
]


async def _start(decimal: int, thrift: ThriftDep, settings: SettingsDep) -> Response:
    if not MIN_DECIMAL <= decimal <= settings.MAX_DECIMAL:
        raise HTTPException(422, decimal_message(settings.MAX_DECIMAL))
    try:
        # Not repeated on a dropped connection: a repeat could queue the task twice.
        r = await thrift.call("queueCalcPi", decimal, idempotent=False)
    except BadDecimal as exc:
        raise HTTPException(422, exc.message) from None
    bind_task(r.id)
    log.info("task queued: decimal %d", r.decimal)
    # Validated and encoded once here; FastAPI would validate the returned model a second time.
    body = TaskCreated(id=r.id, decimal=r.decimal, pushqtime=r.pushqtime).model_dump_json()
    return Response(body, status_code=202, media_type="application/json")


@router.get(
    "/calcpi/{decimal}",
    status_code=202,
    response_model=TaskCreated,
    responses=_START_RESPONSES,
    summary="Start a calculation of pi (from a browser)",
)
async def start_calc_get(decimal: DecimalPath, thrift: ThriftDep, settings: SettingsDep) -> Response:
    """Queue a Leibniz-series calculation of pi to `decimal` places; answers with the task's id."""
    return await _start(decimal, thrift, settings)


@router.post(
    "/calcpi/{decimal}",
    status_code=202,
    response_model=TaskCreated,
    responses=_START_RESPONSES,
    summary="Start a calculation of pi",
)
async def start_calc_post(decimal: DecimalPath, thrift: ThriftDep, settings: SettingsDep) -> Response:
    """Queue a Leibniz-series calculation of pi to `decimal` places; answers with the task's id."""
    return await _start(decimal, thrift, settings)


_TASK_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No task with this id"},
    422: {"model": ErrorResponse, "description": "The request is malformed"},
    503: {"model": ErrorResponse, "description": "The compute service is unavailable"},
}


# The status routes answer with the JSON bytes TaskReader rendered once per read (shared by every
# request it serves); response_model still documents them.
@router.get("/task/{id}", response_model=TaskModel, summary="One task's state", responses=_TASK_RESPONSES)
async def get_task(task_id: TaskIdPath, reader: TaskReaderDep) -> Response:
    """Status, progress, intermediate or final result, and the queued/started/finished times."""
    try:
        return Response(await reader.get_json(task_id_or_404(task_id)), media_type="application/json")
    except BadTask as exc:
        raise HTTPException(404, exc.message) from None


_ENDED = {"model": ErrorResponse, "description": "The task has already ended"}


@router.delete(
    "/task/{id}", response_model=TaskModel, summary="Cancel a task", responses={**_TASK_RESPONSES, 409: _ENDED}
)
async def cancel_task(task_id: TaskIdPath, thrift: ThriftDep, reader: TaskReaderDep) -> Response:
    """Stop a waiting or running task: it becomes REVOKED with a stop time, and its worker stops computing."""
    task_id = task_id_or_404(task_id)
    try:
        record = await thrift.call("cancelTask", task_id, idempotent=False)
    except BadTask as exc:
        raise HTTPException(404, exc.message) from None
    except TaskFinished as exc:
        raise HTTPException(409, exc.message) from None
    log.info("task cancelled: %s", record.status)
    return Response(reader.remember(record), media_type="application/json")


@router.get(
    "/alltasks",
    response_model=list[TaskModel],
    summary="List tasks, newest first",
    responses={
        422: {"model": ErrorResponse, "description": "limit, offset or status out of range"},
        503: {"model": ErrorResponse, "description": "The compute service is unavailable"},
    },
)
@router.get("/alltasks/", response_model=list[TaskModel], include_in_schema=False)
async def list_tasks(
    thrift: ThriftDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="Tasks per page")] = DEFAULT_PAGE,
    offset: Annotated[int, Query(ge=0, le=2**31 - 1, description="Tasks to skip")] = 0,
    status: Annotated[Status | None, Query(description="Only tasks with this status")] = None,
) -> Response:
    """A page of tasks, newest `pushqtime` first; the `X-Total-Count` header counts all that match."""
    page = await thrift.call("listTaskPage", offset, limit, status.value if status else "")
    # Each record validated once (TaskModel) and encoded once: no second pass over the list.
    body = b"[" + b",".join(task_json(r) for r in page.tasks) + b"]"
    return Response(body, media_type="application/json", headers={"X-Total-Count": str(page.total)})


def decimal_message(max_decimal: int) -> str:
    """The one sentence every rejected `decimal` gets."""
    return f"decimal must be an integer from {MIN_DECIMAL} to {max_decimal}"
