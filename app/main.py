"""Builds the FastAPI app: routers, the lifetime of what they share, and errors turned into HTTP answers."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import Tracer

from app import metrics_http, tracing
from app.config import GatewaySettings
from app.contract import MIN_DECIMAL
from app.errors import ComputeFailed, ComputeUnavailable
from app.event_models import file_event_schemas
from app.feeds import FeedHub
from app.metrics import GatewayMetrics
from app.replicas import ThriftReplicas
from app.routes import events, host, tasks, ui
from app.task_reader import TaskReader
from app.thrift_client import ThriftCaller, ThriftPool
from app.thrift_observed import ObservedThrift
from RPC.ttypes import BadArgument, Unavailable

DESCRIPTION = """
Computes pi by the Leibniz series on a Celery worker, behind a Thrift RPC server.

* `GET /calcpi/{decimal}` starts a calculation and answers with the task's id.
* `GET /task/{id}` shows its state, progress and intermediate result while it runs.
* `GET /alltasks` lists tasks, newest first, in pages.
* `GET /` shows the compute host's CPU, memory and disk.

**[Open the live dashboard at /ui](/ui)**: start calculations, watch them run, cancel them
(the Thrift contract behind it all is documented at [/idl](/idl)).
"""


def create_app(settings: GatewaySettings, *, tracer_provider: TracerProvider | None = None) -> FastAPI:
    """A gateway that talks to the Thrift server named in `settings`.

    Traced when `tracer_provider` is given (tests) or OTEL_TRACES_EXPORTER names an exporter.
    """
    metrics = GatewayMetrics() if settings.METRICS_ENABLED else None
    provider, own_provider = tracer_provider, False
    if provider is None and settings.trace_exporters:
        provider, own_provider = tracing.make_provider(settings.trace_exporters), True
    tracer: Tracer | None = None

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.replicas = replicas = ThriftReplicas(
            settings.thrift_addresses,
            size=settings.THRIFT_POOL_SIZE,
            timeout=settings.THRIFT_TIMEOUT,
            connect_timeout=settings.THRIFT_CONNECT_TIMEOUT,
            header=tracer is not None,  # THeader carries the trace context; plain framed binary otherwise
        )
        thrift: ThriftCaller = replicas
        if metrics is not None or tracer is not None:
            thrift = ObservedThrift(replicas, metrics=metrics, tracer=tracer)
        app.state.thrift = thrift
        app.state.task_reader = TaskReader(thrift)
        app.state.feeds = hub = FeedHub()
        # The one place where shutdown reaches the event streams. uvicorn waits for open responses
        # before it stops, and an event stream never ends by itself: the streams' responses
        # (sse-starlette) set `hub.stopping` on SIGINT/SIGTERM, and closing the hub then ends
        # every stream at once, cleanly.
        closer = asyncio.create_task(hub.close_when_stopping(), name="close the event streams on shutdown")
        try:
            yield
        finally:
            closer.cancel()
            hub.close()
            await replicas.close()
            if own_provider and provider is not None:
                # Exports the spans still batched; bounded, since an OTLP endpoint may not answer.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.to_thread(provider.shutdown), 3.0)

    app = FastAPI(
        title="Pi over REST, Thrift and Celery",
        version="1.0.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        telemetry=tracing.fastapi_telemetry(provider),
    )  # the server spans, when tracing is on
    app.state.settings = settings
    app.include_router(host.router)
    app.include_router(tasks.router)
    app.include_router(events.router)
    app.include_router(ui.router)
    if metrics is not None:
        metrics_http.install(app, metrics)
        metrics.watch(lambda: _open_streams(app), lambda: _pools(app))
    if provider is not None:
        tracer = tracing.client_tracer(provider)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            # The range of `decimal` is a setting, so the generated schema gets it here.
            for operation in schema["paths"]["/calcpi/{decimal}"].values():
                for param in operation["parameters"]:
                    if param["name"] == "decimal":
                        param["schema"].update(minimum=MIN_DECIMAL, maximum=settings.MAX_DECIMAL)
            file_event_schemas(schema)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to extend the schema

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _validation_message(exc, settings.MAX_DECIMAL)}, status_code=422)

    @app.exception_handler(BadArgument)
    async def bad_argument(request: Request, exc: BadArgument) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=422)

    @app.exception_handler(Unavailable)
    async def unavailable(request: Request, exc: Unavailable) -> JSONResponse:
        return JSONResponse({"detail": exc.message}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(ComputeUnavailable)
    async def compute_unavailable(request: Request, exc: ComputeUnavailable) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "5"})

    @app.exception_handler(ComputeFailed)
    async def compute_failed(request: Request, exc: ComputeFailed) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=502)

    return app


def _open_streams(app: FastAPI) -> int:
    hub: FeedHub | None = getattr(app.state, "feeds", None)  # None before the app starts
    return len(hub.listeners) if hub is not None else 0


def _pools(app: FastAPI) -> list[ThriftPool]:
    replicas: ThriftReplicas | None = getattr(app.state, "replicas", None)
    return replicas.pools if replicas is not None else []


def _validation_message(exc: RequestValidationError, max_decimal: int) -> str:
    messages = []
    for error in exc.errors():
        name = str(error["loc"][-1]) if error.get("loc") else "request"
        if name == "decimal":
            return tasks.decimal_message(max_decimal)
        messages.append(f"{name}: {error['msg']}")
    return "; ".join(messages) or "invalid request"
