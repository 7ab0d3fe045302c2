"""The IDL's exceptions, as the gateway turns them into statuses: a real Thrift server answers
Unavailable (its state store, a Redis on a port nothing listens on, cannot be used) and the gateway
answers 503 with the reason, without raising anything after the response.

Why the last part: Starlette clears the __traceback__ of every exception an exception handler turned
into a response. Thrift's Python code makes exceptions immutable unless the IDL says otherwise, and an
immutable one raised TypeError there: the client still got its 503, but the server logged an
unhandled error with a stack trace for each one. httpx's ASGITransport re-raises whatever the app
raises, so these checks fail on that too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from thrift.Thrift import TException

from app.config import GatewaySettings
from app.main import create_app
from RPC import ttypes
from testing.stack import REPO
from testing.waiting import free_port
from tests.tserver.test_observability_process import tserver

pytestmark = pytest.mark.timeout(60)

IDL_EXCEPTIONS = [
    cls
    for cls in vars(ttypes).values()
    if isinstance(cls, type) and issubclass(cls, TException) and cls.__module__ == ttypes.__name__
]


@pytest.mark.parametrize("cls", IDL_EXCEPTIONS, ids=lambda cls: cls.__name__)
def test_an_idl_exception_lets_a_framework_clear_its_traceback(cls: type[TException]) -> None:
    exc = cls(message="reason")
    try:
        raise exc
    except TException as caught:
        caught.__traceback__ = None
    assert exc.__traceback__ is None and exc.message == "reason"


@pytest.fixture(scope="module")
def thrift_port(tmp_path_factory: pytest.TempPathFactory, broker_url: str) -> Iterator[int]:
    """A real Thrift server whose state store (Redis on a free port) is down: every call that needs
    the store answers Unavailable."""
    redis_url = f"redis://127.0.0.1:{free_port()}/0"
    folder = tmp_path_factory.mktemp("tserver")
    with tserver(folder, broker_url, STATE_BACKEND="redis", REDIS_URL=redis_url, REDIS_TIMEOUT="0.5") as running:
        yield running.port


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/calcpi/2"), ("GET", "/task/00000000-0000-4000-8000-000000000000"), ("GET", "/alltasks")],
)
def test_unavailable_is_503_naming_the_store_and_nothing_is_raised_after_it(
    thrift_port: int, method: str, path: str
) -> None:
    async def check() -> None:
        app = create_app(GatewaySettings(TSERVER_PORT=thrift_port))
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c,
        ):
            r = await c.request(method, path)
            assert r.status_code == 503, r.text
            assert r.headers["Retry-After"] == "5"
            assert "state store (Redis at 127.0.0.1:" in r.json()["detail"], r.json()

    asyncio.run(check())


def test_the_idl_declares_every_exception_mutable() -> None:
    # In the IDL, not only in gen-py/: `make gen` must keep it (tests/test_packaging.py checks that
    # gen-py/ is what the IDL generates).
    lines = (REPO / "rpcinterface.thrift").read_text().splitlines()
    declared = [line for line in lines if line.startswith("exception ")]
    annotated = [line for line in lines if line == '} (python.immutable = "false")']
    assert len(declared) == len(annotated) == len(IDL_EXCEPTIONS)
