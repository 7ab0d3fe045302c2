"""The HTTP side of the gateway's metrics: an ASGI middleware that counts every request by route
template, and the GET /metrics route.

Why our own middleware rather than prometheus-fastapi-instrumentator or starlette-exporter: both find
a request's route template by matching the request against the app's routes a second time (a walk of
every route per request), and the instrumentator adds request and response size metrics by default.
Starlette's router already records the route it chose in the request's scope (`scope["route"]`); read
after the app has answered, it gives the template for free. This middleware is a plain ASGI one (no
BaseHTTPMiddleware, which would run every request through a task and memory streams of its own), and
keeps the instrumentator's metric and label names, so its dashboards fit.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import FastAPI, Request, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.metrics import CONTENT_TYPE, UNMATCHED, GatewayMetrics


class HttpMetrics:
    """Counts each HTTP request once its response has ended (or the app failed: 500)."""

    def __init__(self, app: ASGIApp, metrics: GatewayMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        # An exception that escapes the app becomes a 500 further out (ServerErrorMiddleware).
        status = 500

        def sending(message: Message) -> Any:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            return send(message)  # the awaitable itself: no coroutine frame of our own per message

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            # A route's `path` is its template (/task/{id}); a request no route matched has none.
            handler = getattr(route, "path", None) or UNMATCHED
            self.metrics.observe_request(handler, scope["method"], status, time.perf_counter() - started)


def install(app: FastAPI, metrics: GatewayMetrics) -> None:
    """Count every request of `app` and serve GET /metrics."""
    app.add_middleware(HttpMetrics, metrics=metrics)

    @app.get("/metrics", include_in_schema=False)
    async def metrics_page(request: Request) -> Response:
        """Every metric in Prometheus' text format."""
        return Response(metrics.render(), media_type=CONTENT_TYPE)
