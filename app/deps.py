"""Typed dependencies: the pieces a route needs, taken from the app that serves it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.config import GatewaySettings
from app.task_reader import TaskReader
from app.thrift_client import ThriftPool


# `async def`, not `def`: FastAPI runs a plain `def` dependency in a worker thread, a thread hop
# per request for a mere attribute lookup.
async def get_thrift(request: Request) -> ThriftPool:
    return request.app.state.thrift


async def get_settings(request: Request) -> GatewaySettings:
    return request.app.state.settings


async def get_task_reader(request: Request) -> TaskReader:
    return request.app.state.task_reader


ThriftDep = Annotated[ThriftPool, Depends(get_thrift)]
SettingsDep = Annotated[GatewaySettings, Depends(get_settings)]
TaskReaderDep = Annotated[TaskReader, Depends(get_task_reader)]
