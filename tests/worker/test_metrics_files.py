"""The worker's metrics folder and listener (worker/metrics_files.py): a port already taken stops a worker
at start with one line; METRICS_ENABLED=false leaves no listener and no folder; a start removes the
folders of programs gone and never a running sibling's; a pool process gone loses its live gauge file,
never its counts. (Counting through a real stack, a pool process killed: tests/faults/test_worker_metrics.py.)"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import psutil
import pytest

from testing.waiting import free_port, wait_for
from tests.worker.observed import REPO, WorkerRun, publish_calc_pi
from worker.metrics_files import fresh_folder, sweep_dead

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "celery", "-A", "worker.app", "worker", "--queues=test-port-taken"],
        ["-m", "worker"],
    ],
    ids=["celery-worker", "python-m-worker"],
)
def test_a_metrics_port_already_taken_is_a_one_line_error_at_start(command: list[str], tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = dict(
            os.environ,
            WORKER_METRICS_PORT=str(port),
            WORKER_METRICS_DIR=str(tmp_path / "metrics"),
            STATE_DIR=str(tmp_path / "results"),
            CELERY_QUEUE="test-port-taken",
            BROKER_URL="amqp://guest:guest@127.0.0.1:1//",
        )  # never reached: it stops before connecting
        done = subprocess.run([sys.executable, *command], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert done.stdout == ""
    assert done.stderr == (
        f"worker: cannot serve metrics on 127.0.0.1:{port}: Address already in use (set "
        "WORKER_METRICS_PORT to a free port, 0 for no listener, or METRICS_ENABLED=false)\n"
    )
    assert list((tmp_path / "metrics").iterdir()) == []  # and it leaves nothing behind


def test_metrics_disabled_leaves_no_listener_and_no_folder(broker_url: str, tmp_path: Path) -> None:
    port = free_port()
    run = WorkerRun(
        tmp_path,
        broker_url,
        env={
            "METRICS_ENABLED": "false",
            "WORKER_METRICS_PORT": str(port),
            "WORKER_METRICS_DIR": str(tmp_path / "metrics"),
        },
    )
    try:
        run.start()
        task_id = str(uuid.uuid4())
        run.write_waiting(task_id, 3)
        publish_calc_pi(broker_url, run.queue, task_id, 3, {})
        wait_for(lambda: run.read_state(task_id).status == "SUCCESS", 30, "the task to succeed")
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
        assert not (tmp_path / "metrics").exists()
        assert "PROMETHEUS_MULTIPROC_DIR" not in psutil.Process(run.proc.pid).environ()  # type: ignore[union-attr] - the process is running here, so its pid is set
    finally:
        run.stop()
        run.clean_up()


def stamp(proc: psutil.Process) -> str:
    return f"{proc.pid}.{int(proc.create_time() * 100)}"


def test_a_start_removes_the_folders_of_programs_gone_and_keeps_a_running_siblings(tmp_path: Path) -> None:
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        running, dead = stamp(psutil.Process(sibling.pid)), stamp(psutil.Process(gone.pid))
        gone.wait(10)
        for name in (running, dead, f"{sibling.pid}.1"):  # the last: a pid reused since that program ran
            (tmp_path / name).mkdir()
            (tmp_path / name / f"counter_{sibling.pid}.db").write_bytes(b"")
        mine = fresh_folder(tmp_path)
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running, mine.name])
        assert mine.name == stamp(psutil.Process()) and list(mine.iterdir()) == []
        assert (tmp_path / running / f"counter_{sibling.pid}.db").exists()
    finally:
        sibling.kill()
        sibling.wait(10)


def test_a_process_gone_loses_its_live_gauge_file_and_keeps_its_counts(tmp_path: Path) -> None:
    # This process plays a program's main process; a child that exits plays a pool process killed.
    mine = fresh_folder(tmp_path)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        gone = subprocess.Popen([sys.executable, "-c", "pass"])
        gone.wait(10)
        for pid in (os.getpid(), child.pid, gone.pid):
            for kind in ("counter", "histogram", "gauge_livesum"):
                (mine / f"{kind}_{pid}.db").write_bytes(b"")
        sweep_dead(tmp_path)
        left = sorted(p.name for p in mine.iterdir())
        assert f"gauge_livesum_{gone.pid}.db" not in left
        assert {
            f"counter_{gone.pid}.db",
            f"histogram_{gone.pid}.db",
            f"gauge_livesum_{child.pid}.db",
            f"gauge_livesum_{os.getpid()}.db",
        } <= set(left)
    finally:
        child.kill()
        child.wait(10)


def test_a_private_folder_is_the_programs_own_and_those_of_programs_killed_are_removed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # WORKER_METRICS_DIR empty (`python -m worker`): a folder in the temp dir, named by its owner.
    from worker import metrics_files

    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    sibling = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        running = f"pi-worker-metrics-{stamp(psutil.Process(sibling.pid))}"
        dead = f"pi-worker-metrics-{stamp(psutil.Process(gone.pid))}"
        gone.wait(10)
        for name in (running, dead):
            (tmp_path / name / "1.1").mkdir(parents=True)
        root = metrics_files._private_root()
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted([running, root.name])
        assert root.name == f"pi-worker-metrics-{stamp(psutil.Process())}"
    finally:
        sibling.kill()
        sibling.wait(10)
