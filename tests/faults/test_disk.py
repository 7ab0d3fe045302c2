"""The state folder runs out of space (a 1 MB tmpfs filled to the last byte) while the product runs.

What a user sees: POST answers 503 naming the disk, reads keep answering, nothing crashes or restarts,
no file is torn or left half-written; once space returns, new tasks are accepted and a task that was
running when the disk filled still finishes.
"""

from __future__ import annotations

import errno
import os
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.faults.conftest import (
    FaultStack,
    assert_state_files_sound,
    program_pid,
    program_state,
    running_stack,
    start_task,
    state_file,
    task,
    wait_ended,
    wait_running,
)

pytestmark = pytest.mark.timeout(180)

FULL = re.compile(r"^cannot write the state of task [0-9a-f-]{36}: No space left on device$")


@pytest.fixture(scope="module")
def small_disk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A tmpfs of 1 MB where the stack's state folder will be."""
    root = tmp_path_factory.mktemp("disk")
    folder = root / "results"
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m,mode=0755", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        pytest.skip(
            f"cannot mount a small tmpfs here ({mounted.stderr.strip()}): "
            "the disk-full tests need root with CAP_SYS_ADMIN"
        )
    try:
        yield root
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True, timeout=30)


@pytest.fixture(scope="module")
def stack(broker_url: str, small_disk: Path) -> Iterator[FaultStack]:
    # A demo pace of 3 s keeps a task running while the disk fills, without burning CPU.
    with running_stack(small_disk, broker_url, DEMO_MIN_SECONDS="3") as s:
        yield s


def fill(folder: Path) -> Path:
    """Fill the file system of `folder` to the last byte with one file; the file."""
    filler = folder / "filler.bin"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 16, 1 << 12, 1):
            chunk = b"\0" * size
            while True:
                try:
                    os.write(fd, chunk)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
    finally:
        os.close(fd)
    assert os.statvfs(folder).f_bavail == 0
    return filler


def test_full_disk_post_is_503_nothing_crashes_and_it_recovers(stack: FaultStack) -> None:
    done = start_task(stack, 2)
    assert wait_ended(stack, done)["digits"] == "3.14"
    running = start_task(stack, 3)
    wait_running(stack, running)
    pids = {name: program_pid(stack, name) for name in ("tserver", "worker")}
    before = {p.name for p in stack.state_dir.glob("*.json")}

    filler = fill(stack.state_dir)
    filled_at = time.monotonic()
    try:
        for _ in range(3):
            started = time.monotonic()
            r = httpx.post(f"{stack.api}/calcpi/2", timeout=10)
            took = time.monotonic() - started
            assert r.status_code == 503, r.text
            assert FULL.match(r.json()["detail"]), r.json()
            assert took < 5
        print(f"disk full: POST answered 503 in {took * 1000:.0f} ms: {r.json()['detail']!r}")
        for path in (f"/task/{done}", "/alltasks", "/"):
            r = httpx.get(stack.api + path, timeout=5)
            assert r.status_code == 200, (path, r.text)
        assert httpx.get(stack.api + "/", timeout=5).json()["disk"]["free"] == 0
        # The running task's demo pace ends now: its last writes fail, and it must wait for space.
        time.sleep(max(0.0, 5 - (time.monotonic() - filled_at)))
        assert task(stack, running)["status"] == "PROGRESS"
        assert {name: program_pid(stack, name) for name in pids} == pids, "a process died on a full disk"
        assert program_state(stack, "tserver") == "RUNNING" and program_state(stack, "worker") == "RUNNING"
        assert {p.name for p in stack.state_dir.glob("*.json")} == before, "a refused task left a file"
        assert_state_files_sound(stack.state_dir, writers_running=True)
    finally:
        filler.unlink()
    freed_at = time.monotonic()

    body = wait_ended(stack, start_task(stack, 4), timeout=30)
    assert body["status"] == "SUCCESS" and body["digits"] == "3.1416"
    body = wait_ended(stack, running, timeout=60)
    print(
        f"space back: the task running when the disk filled ended {time.monotonic() - freed_at:.1f} s later "
        f"(attempts {body['attempts']})"
    )
    assert body["status"] == "SUCCESS" and body["digits"] == "3.142", body
    assert state_file(stack, running)["status"] == "SUCCESS"
    assert {name: program_pid(stack, name) for name in pids} == pids
    assert_state_files_sound(stack.state_dir, writers_running=True)
