"""Opening the configured backend: the worker's TaskStore and the Thrift server's TaskCatalog."""

from __future__ import annotations

from state.config import StateSettings
from state.files import FileStore
from state.files_catalog import FileCatalog
from state.interface import TaskCatalog, TaskStore


def open_store(settings: StateSettings) -> TaskStore:
    """The worker's view of the store."""
    return FileStore(settings.STATE_DIR)


def open_catalog(settings: StateSettings, *, ttl: float, threads: int) -> TaskCatalog:
    """The Thrift server's view of the store; `ttl` > 0 removes ended tasks older than that."""
    return FileCatalog(FileStore(settings.STATE_DIR), ttl=ttl, threads=threads)


def describe(settings: StateSettings) -> str:
    """Where the state lives, for a log line."""
    return f"files in {settings.STATE_DIR}"
