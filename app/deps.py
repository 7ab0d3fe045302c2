"""Typed dependencies: the pieces a route needs, taken from the app that serves it or checked in its URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, HTTPException, Path, Request

from app.config import GatewaySettings
from app.contract import EXAMPLE_TASK_ID, TASK_ID
from app.feeds import FeedHub
from app.logs import bind_task
from app.task_reader import TaskReader
from app.thrift_client import ThriftCaller


# `async def`, not `def`: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
# per request for a mere attribute lookup.
async def get_thrift(request: Request) -> ThriftCaller:
    thrift: ThriftCaller = request.app.state.thrift
    return thrift


async def get_settings(request: Request) -> GatewaySettings:
    settings: GatewaySettings = request.app.state.settings
    return settings


async def get_task_reader(request: Request) -> TaskReader:
    reader: TaskReader = request.app.state.task_reader
    return reader


async def get_hub(request: Request) -> FeedHub:
    hub: FeedHub = request.app.state.feeds
    return hub


def task_id_or_404(task_id: str) -> str:
    """The id if it is a canonical UUID (named on the request's log lines from here on); 404 without a
    Thrift hop otherwise.

    Called by the route rather than declared as a dependency: a dependency with a parameter of its own
    cost the gateway ~4% of a status read's CPU (FastAPI solves it per request).
    """
    if not TASK_ID.fullmatch(task_id):
        raise HTTPException(404, f"no task with this id: a task id is a UUID such as {EXAMPLE_TASK_ID}")
    bind_task(task_id)
    return task_id


ThriftDep = Annotated[ThriftCaller, Depends(get_thrift)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
TaskReaderDep = Annotated[TaskReader, Depends(get_task_reader)]
HubDep = Annotated[FeedHub, Depends(get_hub)]
#: The {id} of a route's path, checked with task_id_or_404.
TaskIdPath = Annotated[str, Path(alias="id", description="Task id (a UUID)")]
