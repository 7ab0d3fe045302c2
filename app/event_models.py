"""The event streams' events as models: what each event is called and what its data holds.

They describe the streams in the OpenAPI schema, the way OpenAPI 3.2 describes an event stream:
an `itemSchema` (here a oneOf, told apart by the event's name) of objects with the SSE fields
`event`, `id` and `data`, whose `data` is a string of JSON (`contentMediaType`, `contentSchema`).
The streams themselves send data that app/snapshots.py rendered once per change and shares
between clients, so these models document the wire rather than build it; TaskPage is built.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, Json

from app.contract import Status
from app.models import ErrorResponse, HostModel, TaskModel


class TaskPage(BaseModel):
    """A page of the task list, newest first, and the filter it answers."""

    total: int = Field(description="Tasks that match the filter in all")
    offset: int = Field(description="Tasks skipped")
    limit: int = Field(description="Tasks per page")
    status: Status | None = Field(description="Only tasks with this status; null: all")
    tasks: list[TaskModel] = Field(description="The page, newest first")


class _Event(BaseModel):
    # `Json[...]` is documented as a string holding JSON (contentSchema) only in validation mode;
    # FastAPI asks for a response's schema in serialization mode, which would show the object.
    model_config = ConfigDict(json_schema_mode_override="validation")


_ID = Field(description="A digest of the data: a reconnecting EventSource sends it back as Last-Event-ID")


class TaskEvent(_Event):
    """The task's state: at once, then on every change; the stream ends after a final state."""

    event: Literal["task"]
    id: str = _ID
    data: Json[TaskModel]


class TasksEvent(_Event):
    """The page: at once, then whenever a task on it changes."""

    event: Literal["tasks"]
    id: str = _ID
    data: Json[TaskPage]


class HostEvent(_Event):
    """The compute host's state, every second (no id: there is nothing to resume)."""

    event: Literal["host"]
    data: Json[HostModel]


class ProblemEvent(_Event):
    """`unavailable`: the compute side cannot be reached (the stream goes on and resumes with the
    state); `gone`: the task was deleted (the stream ends)."""

    event: Literal["unavailable", "gone"]
    data: Json[ErrorResponse]


TaskStream = Annotated[TaskEvent | ProblemEvent, Field(discriminator="event")]
ListStream = Annotated[TasksEvent | HostEvent | ProblemEvent, Field(discriminator="event")]


def stream_response(events: Any, example: str) -> dict[str, Any]:
    """A route's `responses` entry for an event stream of `events` (a union of the models above).

    FastAPI files a response model under the route's media type, JSON for these routes (so that
    their error models land right); file_event_schemas moves it where an event stream has it.
    """
    return {"model": events, "description": "An event stream", "content": {"text/event-stream": {"example": example}}}


def file_event_schemas(openapi: dict[str, Any]) -> None:
    """Move each event stream's model from `application/json` `schema` to `text/event-stream` `itemSchema`."""
    for item in openapi["paths"].values():
        for operation in item.values():
            for response in operation.get("responses", {}).values():
                content = response.get("content", {})
                if "text/event-stream" in content and "application/json" in content:
                    schema = content.pop("application/json")["schema"]
                    schema.pop("title", None)  # FastAPI's made-up name of the union
                    content["text/event-stream"]["itemSchema"] = schema
