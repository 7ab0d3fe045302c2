"""Response models: the IDL's structs as the REST API shows them."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.contract import EXAMPLE_TASK_ID, WAITING, Status
from RPC.ttypes import HostStatus, calcResult


class ErrorResponse(BaseModel):
    """Every error answer: a status code and one readable sentence."""

    detail: str = Field(examples=[f"no task with id {EXAMPLE_TASK_ID}"])


class CpuModel(BaseModel):
    percent: float = Field(description="Utilisation of all CPUs, 0..100", examples=[12.5])
    count: int = Field(description="Logical CPUs", examples=[2])
    load_average: list[float] = Field(description="Load over 1, 5 and 15 minutes", examples=[[0.42, 0.3, 0.25]])


class MemoryModel(BaseModel):
    total: int = Field(description="Bytes of physical memory", examples=[25_769_803_776])
    available: int = Field(description="Bytes available without swapping", examples=[23_622_320_128])
    percent: float = Field(description="Used share, 0..100", examples=[8.3])


class DiskModel(BaseModel):
    path: str = Field(description="The state folder", examples=["/data/results"])
    total: int = Field(description="Bytes in the file system", examples=[270_582_939_648])
    free: int = Field(description="Bytes free", examples=[85_899_345_920])
    percent: float = Field(description="Used share, 0..100", examples=[22.0])


class HostModel(BaseModel):
    """The compute host's state."""

    hostname: str = Field(examples=["compute-1"])
    ip: str = Field(examples=["172.18.0.3"])
    cpu: CpuModel
    memory: MemoryModel
    disk: DiskModel

    @classmethod
    def from_thrift(cls, h: HostStatus) -> HostModel:
        return cls(
            hostname=h.hostname,
            ip=h.ip,
            cpu=CpuModel(percent=h.cpu.percent, count=h.cpu.count, load_average=h.cpu.load_average),
            memory=MemoryModel(total=h.memory.total, available=h.memory.available, percent=h.memory.percent),
            disk=DiskModel(path=h.disk.path, total=h.disk.total, free=h.disk.free, percent=h.disk.percent),
        )


class TaskModel(BaseModel):
    """One pi calculation."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c",
                    "status": "SUCCESS",
                    "decimal": 8,
                    "progress": 100.0,
                    "result": 3.14159265,
                    "digits": "3.14159265",
                    "terms": 714607312,
                    "error": None,
                    "attempts": 1,
                    "stalled": False,
                    "heartbeat": None,
                    "pushqtime": "2026-11-28T03:00:00.000001Z",
                    "starttime": "2026-11-28T03:00:00.004000Z",
                    "stoptime": "2026-11-28T03:00:01.410000Z",
                    "chunks_done": 0,
                    "chunks_total": 0,
                    "hosts": ["compute-1"],
                }
            ]
        }
    )

    id: str = Field(description="Task id (a UUID)")
    status: Status = Field(description="Where the task stands; REVOKED means cancelled")
    decimal: int = Field(description="Decimals asked for")
    progress: float = Field(ge=0, le=100, description="Percent of the work done; never goes back; 100 only at SUCCESS")
    result: float | None = Field(description="PROGRESS: partial sum rounded to `decimal` places; SUCCESS: pi rounded")
    digits: str | None = Field(description="At SUCCESS, pi with exactly `decimal` places, trailing zeros kept")
    terms: int = Field(description="Series terms summed so far")
    error: str | None = Field(description="At FAILURE or REVOKED, why")
    attempts: int = Field(description="Times a worker started it; above 1 it was delivered again after a worker died")
    stalled: bool = Field(description="PROGRESS, but its worker stopped reporting: it died and no live worker holds it")
    heartbeat: datetime | None = Field(description="When its worker last reported (UTC); null unless PROGRESS")
    pushqtime: datetime = Field(description="Queued at (UTC)")
    starttime: datetime | None = Field(description="Started at (UTC); null while WAITING")
    stoptime: datetime | None = Field(description="Finished at (UTC); null until it ends")
    chunks_done: int = Field(default=0, description="A calculation split into chunks: how many have finished")
    chunks_total: int = Field(default=0, description="How many chunks it was split into (0: computed in one piece)")
    hosts: list[str] = Field(default_factory=list, description="Host names of the workers that computed it")

    @classmethod
    def from_thrift(cls, r: calcResult) -> TaskModel:
        return cls(
            id=r.id,
            status=r.status,
            decimal=r.decimal or 0,
            progress=r.progress or 0.0,
            result=r.result,
            digits=r.digits,
            terms=r.terms or 0,
            error=r.error,
            attempts=r.attempts or 0,
            stalled=bool(r.stalled),
            heartbeat=r.heartbeat,
            pushqtime=r.pushqtime,
            starttime=r.starttime,
            stoptime=r.stoptime,
            chunks_done=r.chunks_done or 0,
            chunks_total=r.chunks_total or 0,
            hosts=list(r.hosts or []),
        )


def task_json(record: calcResult) -> bytes:
    """A task's REST representation (TaskModel), JSON-encoded: what GET /task/{id} answers."""
    return TaskModel.from_thrift(record).model_dump_json().encode()


class TaskCreated(BaseModel):
    """A task that was just queued."""

    id: str = Field(examples=["5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"])
    status: Status = Field(default=Status(WAITING), description="A new task waits for a worker")
    decimal: int = Field(examples=[8])
    pushqtime: datetime = Field(examples=["2026-11-28T03:00:00.000001Z"])
