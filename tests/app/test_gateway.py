"""The gateway on its own: validation before any Thrift hop, and 503 when the Thrift server is gone."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest
from pydantic import ValidationError

from app.config import GatewaySettings
from app.main import create_app
from testing.waiting import free_port

pytestmark = pytest.mark.timeout(30)


def run(coro):
    return asyncio.run(coro)


def test_unreachable_thrift_server_is_503_quickly() -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port(), THRIFT_TIMEOUT=2.0, THRIFT_CONNECT_TIMEOUT=0.5))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            for method, path in [
                ("GET", "/"),
                ("GET", "/calcpi/3"),
                ("POST", "/calcpi/3"),
                ("GET", "/alltasks"),
                ("GET", "/task/00000000-0000-4000-8000-000000000000"),
            ]:
                started = time.monotonic()
                r = await c.request(method, path)
                assert r.status_code == 503, (path, r.text)
                assert "unreachable" in r.json()["detail"]
                assert r.headers["Retry-After"] == "5"
                assert time.monotonic() - started < 1.0

    run(check())


def test_silent_thrift_server_is_503_within_the_timeout() -> None:
    # A server that accepts and never answers: the call must give up after THRIFT_TIMEOUT, not hang.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        port = listener.getsockname()[1]

        async def check() -> None:
            app = create_app(GatewaySettings(TSERVER_PORT=port, THRIFT_TIMEOUT=1.0))
            async with (
                app.router.lifespan_context(app),
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
            ):
                started = time.monotonic()
                r = await c.get("/task/00000000-0000-4000-8000-000000000000")
                elapsed = time.monotonic() - started
                assert r.status_code == 503 and "did not answer within 1 s" in r.json()["detail"]
                assert 0.9 < elapsed < 2.0

        run(check())


@pytest.mark.parametrize(
    "path", ["/calcpi/0", "/calcpi/11", "/calcpi/abc", "/calcpi/2.5", "/calcpi/-3", "/calcpi/1" + "0" * 400]
)
def test_bad_decimal_is_rejected_without_a_thrift_hop(path: str) -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            for method in ("GET", "POST"):
                r = await c.request(method, path)
                assert r.status_code == 422
                assert r.json() == {"detail": "decimal must be an integer from 1 to 10"}

    run(check())


@pytest.mark.parametrize("task_id", ["abc", "...", "%2E%2E", "00000000-0000-4000-8000-00000000000G", "x" * 3000])
def test_malformed_task_id_is_404_without_a_thrift_hop(task_id: str) -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port()))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            r = await c.get(f"/task/{task_id}")
            assert r.status_code == 404 and r.json()["detail"].startswith("no task with this id")

    run(check())


def test_max_decimal_setting_moves_the_limit() -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=free_port(), MAX_DECIMAL=6))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            r = await c.get("/calcpi/7")
            assert r.status_code == 422 and r.json()["detail"] == "decimal must be an integer from 1 to 6"

    run(check())


def test_openapi_documents_errors_as_detail_strings() -> None:
    spec = create_app(GatewaySettings()).openapi()
    ops = spec["paths"]["/calcpi/{decimal}"]
    for method in ("get", "post"):
        assert set(ops[method]["responses"]) == {"202", "422", "503"}
        assert ops[method]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
            "ErrorResponse"
        )
    assert set(spec["paths"]["/task/{id}"]["get"]["responses"]) >= {"200", "404", "503"}


def test_the_vocabulary_is_the_idls() -> None:
    from app.contract import FINAL_STATUSES, Status
    from RPC import constants

    assert [s.value for s in Status] == constants.STATUSES and FINAL_STATUSES == constants.FINAL_STATUSES
    spec = create_app(GatewaySettings()).openapi()
    assert spec["components"]["schemas"]["Status"]["enum"] == constants.STATUSES
    limit = next(p for p in spec["paths"]["/alltasks"]["get"]["parameters"] if p["name"] == "limit")["schema"]
    assert (limit["default"], limit["maximum"]) == (constants.DEFAULT_PAGE, constants.MAX_PAGE)
    assert GatewaySettings.model_fields["MAX_DECIMAL"].default == constants.DEFAULT_MAX_DECIMAL
    for allowed in (constants.MIN_DECIMAL, constants.MAX_SUPPORTED_DECIMAL):
        settings = GatewaySettings(MAX_DECIMAL=allowed)
        assert allowed == settings.MAX_DECIMAL
    for refused in (constants.MIN_DECIMAL - 1, constants.MAX_SUPPORTED_DECIMAL + 1):
        with pytest.raises(ValidationError):
            GatewaySettings(MAX_DECIMAL=refused)
