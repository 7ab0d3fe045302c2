"""The state-file store: atomic writes, hostile ids and files, listing order."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from state.errors import StorageError, UnknownTask
from state.files import FileStore
from state.files_index import TaskIndex
from state.records import FAILURE, PROGRESS, SUCCESS, WAITING, TaskState, check_task_id

ID = "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"


def waiting(task_id: str = ID, pushqtime: str = "2026-11-28T03:00:00+00:00") -> TaskState:
    return TaskState(id=task_id, status=WAITING, decimal=5, pushqtime=pushqtime)


def test_write_then_read_round_trips(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    state = waiting().evolve(
        status=SUCCESS,
        progress=100.0,
        result=3.14159,
        digits="3.14159",
        terms=42,
        starttime="2026-11-28T03:00:01+00:00",
        stoptime="2026-11-28T03:00:02+00:00",
    )
    store.write(state)
    assert store.read(ID) == state
    assert json.loads((tmp_path / f"{ID}.json").read_text())["digits"] == "3.14159"
    assert os.listdir(tmp_path) == [f"{ID}.json"], "no temporary file may be left behind"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ID.upper(),
        ID + ".json",
        ID[:-1],
        ID + "0",
        "x" * 100_000,
        "\x00" * 36,
        ID.replace("-", "/"),
        5,
        None,
        b"abc",
    ],
)
def test_hostile_ids_never_become_paths(tmp_path: Path, bad: object) -> None:
    store = FileStore(tmp_path)
    with pytest.raises(UnknownTask):
        store.read(bad)
    with pytest.raises(UnknownTask):
        check_task_id(bad)


def test_a_file_outside_the_folder_cannot_be_read(tmp_path: Path) -> None:
    (tmp_path / "secret.json").write_text(json.dumps(waiting().__class__.__name__))
    store = FileStore(tmp_path / "results")
    (tmp_path / "results").mkdir()
    for attempt in ("../secret", "..%2Fsecret", "../secret.json"):
        with pytest.raises(UnknownTask):
            store.read(attempt)


def test_missing_task_is_unknown(tmp_path: Path) -> None:
    with pytest.raises(UnknownTask, match="no task with id"):
        FileStore(tmp_path).read(ID)


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"{",
        b"[]",
        b"null",
        b'{"id": 1}',
        b"\xff\xfe",
        b"x" * 100_000,
        json.dumps({"id": ID, "status": "DONE", "decimal": 5, "pushqtime": "2026-11-28T03:00:00+00:00"}).encode(),
        json.dumps({"id": ID, "status": "WAITING", "decimal": "5", "pushqtime": "2026-11-28T03:00:00+00:00"}).encode(),
        json.dumps({"id": ID, "status": "WAITING", "decimal": 5, "pushqtime": "yesterday"}).encode(),
        json.dumps(
            {"id": ID, "status": "WAITING", "decimal": 5, "pushqtime": "2026-11-28T03:00:00+00:00", "progress": 1e309}
        )
        .encode()
        .replace(b"Infinity", b"1e999"),
        json.dumps(
            {
                "id": "00000000-0000-4000-8000-000000000000",
                "status": "WAITING",
                "decimal": 5,
                "pushqtime": "2026-11-28T03:00:00+00:00",
            }
        ).encode(),
    ],
)
def test_corrupt_file_reads_as_failure_with_a_reason(tmp_path: Path, content: bytes) -> None:
    (tmp_path / f"{ID}.json").write_bytes(content)
    state = FileStore(tmp_path).read(ID)
    assert state.status == FAILURE and state.id == ID
    assert "corrupt" in (state.error or "")


def test_unknown_extra_fields_are_ignored(tmp_path: Path) -> None:
    raw = json.loads(waiting().to_json())
    raw["added_by_a_later_version"] = [1, 2]
    (tmp_path / f"{ID}.json").write_text(json.dumps(raw))
    assert FileStore(tmp_path).read(ID) == waiting()


def test_listing_is_newest_first_and_skips_foreign_files(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    ids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    # Offsets differ, so sorting by the text would be wrong: 03:30+01:00 is 02:30 UTC.
    store.write(waiting(ids[0], "2026-11-28T03:00:00+00:00"))
    store.write(waiting(ids[1], "2026-11-28T03:30:00+01:00"))
    store.write(waiting(ids[2], "2026-11-28T04:00:00+00:00"))
    (tmp_path / "README.txt").write_text("not a task")
    (tmp_path / f".{ids[0]}.json.tmp").write_text("{")
    (tmp_path / "subdir.json").mkdir()
    index = TaskIndex(store)
    index.rescan()
    assert [s.id for s in index.page(0, 10)[0]] == [ids[2], ids[0], ids[1]]


def test_unwritable_folder_is_a_storage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StorageError, match="cannot write the state"):
        FileStore(blocker).write(waiting())


def test_readers_never_see_a_torn_file(tmp_path: Path) -> None:
    store = FileStore(tmp_path)
    store.write(waiting())
    stop = threading.Event()
    errors: list[str] = []
    seen: list[float] = []

    def writer() -> None:
        state = waiting().evolve(status=PROGRESS, error="x" * 2000)
        i = 0
        while not stop.is_set():
            i += 1
            store.write(state.evolve(progress=min(99.0, i / 100)))

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for _ in range(2000):
            state = store.read(ID)
            if state.status == FAILURE:
                errors.append(state.error or "")
            seen.append(state.progress)
    finally:
        stop.set()
        thread.join()
    assert errors == []
    assert seen == sorted(seen)
