"""Both backends of the state store, each in a namespace of its own: a temporary folder, or a key
prefix of its own on the machine's real Redis (removed after the test)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis

from state.backends import open_catalog, open_store
from state.config import StateSettings
from state.interface import TaskCatalog, TaskStore
from tests.conftest import REDIS_URL

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@dataclass
class Backend:
    """One backend's two faces on one namespace: the worker's store, and one Thrift server's catalog
    living on an event loop of its own, as in the server."""

    name: str
    settings: StateSettings
    store: TaskStore
    loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.new_event_loop)
    _catalog: TaskCatalog | None = None

    @property
    def catalog(self) -> TaskCatalog:
        if self._catalog is None:
            self._catalog = open_catalog(self.settings, ttl=0.0, threads=2)
        return self._catalog

    def on_catalog(self, use: Any, ttl: float | None = None) -> Any:
        """use(catalog), awaited on the catalog's loop; `ttl` sets its RESULT_TTL first."""
        if ttl is not None:
            self.catalog.ttl = ttl  # type: ignore[attr-defined]  # both backends keep it there
        return self.loop.run_until_complete(use(self.catalog))

    def close(self) -> None:
        if self._catalog is not None:
            self.loop.run_until_complete(self._catalog.close())
        self.loop.close()


def redis_client() -> redis.Redis:
    return redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)


@pytest.fixture(params=["files", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    """Each backend in turn."""
    yield from _backend(request.param, tmp_path)


@pytest.fixture
def redis_backend(tmp_path: Path, redis_url: str) -> Iterator[Backend]:
    """The Redis backend alone."""
    yield from _backend("redis", tmp_path)


def _backend(name: str, tmp_path: Path) -> Iterator[Backend]:
    prefix = f"pitest-{uuid.uuid4().hex[:10]}:"
    settings = StateSettings(
        STATE_BACKEND=name, STATE_DIR=tmp_path / "results", REDIS_URL=REDIS_URL, REDIS_KEY_PREFIX=prefix
    )
    client = redis_client() if name == "redis" else None
    backend = Backend(name, settings, open_store(settings))
    try:
        yield backend
    finally:
        backend.close()
        if client is not None:
            keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
            if keys:
                client.delete(*keys)
            client.close()
