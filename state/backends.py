"""Opening the configured backend: the worker's TaskStore and the Thrift server's TaskCatalog."""

from __future__ import annotations

import redis
import redis.asyncio
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.retry import Retry

from state.config import StateSettings
from state.files import FileStore
from state.files_catalog import FileCatalog
from state.interface import TaskCatalog, TaskStore
from state.redis_catalog import RedisCatalog
from state.redis_store import RedisStore


def open_store(settings: StateSettings) -> TaskStore:
    """The worker's view of the store (opens no connection yet)."""
    if settings.STATE_BACKEND == "redis":
        client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_TIMEOUT,
            socket_connect_timeout=settings.REDIS_TIMEOUT,
            # One quick retry: a pooled connection may have died with a restart.
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return RedisStore(client, settings.REDIS_KEY_PREFIX, settings.redis_where)
    return FileStore(settings.STATE_DIR)


def open_catalog(settings: StateSettings, *, ttl: float, threads: int) -> TaskCatalog:
    """The Thrift server's view of the store (opens no connection yet); `ttl` > 0 removes ended tasks
    older than that many seconds."""
    if settings.STATE_BACKEND == "redis":
        client = redis.asyncio.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.REDIS_TIMEOUT,
            socket_connect_timeout=settings.REDIS_TIMEOUT,
            retry=AsyncRetry(NoBackoff(), 1),
            health_check_interval=30,
        )
        return RedisCatalog(
            client, settings.REDIS_KEY_PREFIX, settings.redis_where, timeout=settings.REDIS_TIMEOUT, ttl=ttl
        )
    return FileCatalog(FileStore(settings.STATE_DIR), ttl=ttl, threads=threads)


def describe(settings: StateSettings) -> str:
    """Where the state lives, for a log line (no password)."""
    if settings.STATE_BACKEND == "redis":
        return f"Redis at {settings.redis_where}, keys {settings.REDIS_KEY_PREFIX}*"
    return f"files in {settings.STATE_DIR}"


def disk_path(settings: StateSettings) -> str:
    """The folder whose disk the host status reports: the state folder, or / when state is in Redis."""
    return str(settings.STATE_DIR) if settings.STATE_BACKEND == "files" else "/"
