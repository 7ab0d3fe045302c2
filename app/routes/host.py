"""GET /: the compute host's state."""

from __future__ import annotations

from fastapi import APIRouter

from app.deps import ThriftDep
from app.models import ErrorResponse, HostModel

router = APIRouter(tags=["host"])


@router.get(
    "/",
    response_model=HostModel,
    summary="The compute host's state",
    responses={503: {"model": ErrorResponse, "description": "The compute service is unreachable"}},
)
async def get_host(thrift: ThriftDep) -> HostModel:
    """CPU load, memory, free disk of the state folder, host name and address of the compute host."""
    return HostModel.from_thrift(await thrift.call("getHostStatus"))


@router.get("/livez", summary="Liveness of the gateway itself", response_model=dict[str, str])
async def livez() -> dict[str, str]:
    """Answers without calling the Thrift server: for health checks, and the benchmarks' baseline route."""
    return {"status": "ok"}
