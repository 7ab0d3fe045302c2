"""FileStore: one JSON document per task, STATE_DIR/<id>.json, written atomically.

The worker writes a task's file while the Thrift server reads it, so a file is never rewritten in
place: each write goes to a hidden temporary file in the same folder and is then os.replace()d over
the old one. A reader sees the old state or the new one, never a torn one.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from state.errors import StorageError, UnknownTask
from state.records import FAILURE, TASK_ID, TaskState, check_task_id, utcnow

log = logging.getLogger(__name__)

_SUFFIX = ".json"
_TMP_SUFFIX = ".tmp"
# A cancellation request is a separate file, so the worker's progress writes cannot overwrite it.
_CANCEL_PREFIX = ".cancel-"
# Read-modify-write of a task (several chunk workers at once) holds an flock on this file.
_LOCK_PREFIX = ".lock-"
# A state file is a few hundred bytes; anything far larger is not ours and is not parsed.
_MAX_FILE_BYTES = 64 * 1024


class FileStore:
    """Reads and atomically writes the state files of one folder. Safe to share between threads."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        # Paths are built as strings: pathlib interns every name it parses, and that table never
        # shrinks, so a Path per task file grew the server by ~50 bytes for every task it read.
        self._prefix = os.path.join(self.folder, "")

    def path_for(self, task_id: object) -> str:
        """The file of a task; the id is validated before it becomes a path."""
        return self._prefix + check_task_id(task_id) + _SUFFIX

    def _cancel_path(self, task_id: object) -> str:
        return self._prefix + _CANCEL_PREFIX + check_task_id(task_id)

    def write(self, state: TaskState) -> None:
        """Replace the task's file atomically; StorageError if the folder cannot take it."""
        target = self.path_for(state.id)
        data = state.to_json()
        # A name no other writer uses at the same time (one per process and thread): cheaper than
        # mkstemp's random names, and a crash leaves at most one such file per writer and task.
        tmp_name = f"{self._prefix}.{state.id}.{os.getpid()}.{threading.get_ident()}{_TMP_SUFFIX}"
        try:
            fd = os.open(tmp_name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.replace(tmp_name, target)
        except OSError as exc:
            _unlink_quietly(tmp_name)
            raise StorageError(f"cannot write the state of task {state.id}: {exc.strerror or exc}") from exc

    def update(self, task_id: str, change: Callable[[TaskState], TaskState | None]) -> TaskState:
        """Read, change and write the task under an exclusive lock; the state now. `change` returning
        None writes nothing. UnknownTask if there is no task, StorageError if it cannot be written."""
        try:
            fd = os.open(
                self._prefix + _LOCK_PREFIX + check_task_id(task_id), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600
            )
        except OSError as exc:
            raise StorageError(f"cannot lock the state of task {task_id}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # released when fd is closed
            state = self.read(task_id)
            new = change(state)
            if new is None:
                return state
            self.write(new)
            return new
        finally:
            os.close(fd)

    def read(self, task_id: object) -> TaskState:
        """The task's state; UnknownTask if there is none. A corrupt file reads as FAILURE."""
        path = self.path_for(task_id)
        try:
            raw = _read_file(path, _MAX_FILE_BYTES + 1)
        except (FileNotFoundError, IsADirectoryError):
            raise UnknownTask(f"no task with id {task_id}") from None
        return self._decode(str(task_id), raw)

    def delete(self, task_id: object) -> None:
        """Remove the task's file, any cancellation request and its lock file."""
        self.delete_state(task_id)
        self.clear_cancel(task_id)
        _unlink_quietly(self._prefix + _LOCK_PREFIX + check_task_id(task_id))

    def delete_state(self, task_id: object) -> None:
        """Remove the task's file only (a cancellation request stays, for a message still in flight)."""
        _unlink_quietly(self.path_for(task_id))

    def orphan_cancels(self, older_than: float) -> list[str]:
        """Ids of cancellation requests older than `older_than` (a POSIX time) whose task file is gone."""
        ids = []
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    task_id = entry.name[len(_CANCEL_PREFIX) :]
                    if (
                        entry.name.startswith(_CANCEL_PREFIX)
                        and TASK_ID.fullmatch(task_id)
                        and entry.stat().st_mtime < older_than
                        and not os.path.exists(self.path_for(task_id))
                    ):
                        ids.append(task_id)
        except FileNotFoundError:
            pass
        return ids

    def remove_stale_temp_files(self, older_than: float) -> int:
        """Remove temporary files that a writer killed mid-write left behind; how many."""
        removed = 0
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    if (
                        entry.name.startswith(".")
                        and entry.name.endswith(_TMP_SUFFIX)
                        and entry.stat(follow_symlinks=False).st_mtime < older_than
                    ):
                        _unlink_quietly(entry.path)
                        removed += 1
        except FileNotFoundError:
            pass
        return removed

    def request_cancel(self, task_id: object) -> None:
        """Leave a cancellation request that the worker computing the task polls between chunks."""
        try:
            fd = os.open(self._cancel_path(task_id), os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                os.utime(fd)  # as touch does: a repeated request is a recent one
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(f"cannot record the cancellation of task {task_id}: {exc.strerror or exc}") from exc

    def cancel_requested(self, task_id: object) -> bool:
        """True if the task's cancellation was requested."""
        return os.path.exists(self._cancel_path(task_id))

    def clear_cancel(self, task_id: object) -> None:
        """Remove the task's cancellation request, once it has taken effect."""
        _unlink_quietly(self._cancel_path(task_id))

    def iter_task_ids(self) -> Iterator[str]:
        """The same, one at a time: walking 100,000 files holds one name, not a list of them."""
        try:
            with os.scandir(self.folder) as entries:
                for entry in entries:
                    name = entry.name
                    if name.endswith(_SUFFIX) and TASK_ID.fullmatch(name[: -len(_SUFFIX)]):
                        yield name[: -len(_SUFFIX)]
        except FileNotFoundError:
            return

    def exists(self, task_id: object) -> bool:
        """True if the task's state file is there."""
        return os.path.isfile(self.path_for(task_id))

    def _decode(self, task_id: str, raw: bytes) -> TaskState:
        try:
            if len(raw) > _MAX_FILE_BYTES:
                raise ValueError("file too large")
            state = TaskState.from_json(raw)
            if state.id != task_id:
                raise ValueError("id in the file does not match its name")
            return state
        except (ValueError, TypeError, UnicodeDecodeError) as exc:
            log.warning("state file of task %s is corrupt: %s", task_id, exc)
            return corrupt_state(task_id, self.path_for(task_id))


def corrupt_state(task_id: str, path: str | Path) -> TaskState:
    """How a task whose file cannot be parsed is shown: ended, with the reason."""
    try:
        mtime = datetime.fromtimestamp(os.stat(path).st_mtime, UTC).isoformat()
    except OSError:
        mtime = utcnow()
    return TaskState(
        id=task_id,
        status=FAILURE,
        decimal=1,
        pushqtime=mtime,
        stoptime=mtime,
        error="the task's state file is corrupt or unreadable",
    )


def _read_file(path: str, limit: int) -> bytes:
    """At most `limit` bytes of a file, in a buffer of the file's size. Not open().read(limit):
    that allocates `limit` bytes and shrinks them, and the shrunk 64 KiB blocks left the heap too
    fragmented to hand back to the system (~8 MB after reading 100,000 files)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        want = min(os.fstat(fd).st_size + 1, limit)  # +1: a file that grew shows as too long
        chunks = []
        while want > 0 and (chunk := os.read(fd, want)):
            chunks.append(chunk)
            want -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as exc:
        log.warning("cannot remove %s: %s", path, exc)
