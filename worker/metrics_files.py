"""Where a worker's metrics live between its processes, and the listener that serves their sum.

A prefork worker counts in its pool processes; a registry in the main process would see none of it.
prometheus_client's multiprocess mode has every process write its values to files of its own (named by
pid) in PROMETHEUS_MULTIPROC_DIR, and a collector sums the files. Our layout, for the worker programs
of one host (supervisord's `worker` and `chunks`):

    WORKER_METRICS_DIR/<main pid>.<start time>/counter_<pid>.db, histogram_<pid>.db, gauge_livesum_<pid>.db

- Each program start gets a fresh sub-folder of its own (named by its main process, whose pool
  processes inherit it). Its start removes the sub-folders of programs that are no longer running,
  never one whose owner still runs: a sibling's files are only ever removed by the sibling itself
  (at its orderly stop) or after it is gone.
- The program with a listener (WORKER_METRICS_PORT) serves the sum over every sub-folder, so one
  scrape sees both programs; the other program has WORKER_METRICS_PORT=0.
- A pool process that exits or is killed keeps its counter and histogram files (its counts are not
  lost); its live gauge file is removed (prometheus_client's mark_process_dead) as soon as it is seen
  gone: at its own orderly exit, when its replacement starts, and at every scrape.
"""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import psutil
from celery import signals
from prometheus_client import CollectorRegistry, start_http_server, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from worker.app import settings

_ENV = "PROMETHEUS_MULTIPROC_DIR"
_PRIVATE = "pi-worker-metrics-"  # + the owner's stamp: WORKER_METRICS_DIR empty
_state: dict[str, Any] = {}  # root, mine, private, main (pid), server: this program's, set at its start


def _stamp(proc: psutil.Process) -> str:
    # pid and start time (centiseconds): a pid reused by a later process does not look like the owner.
    return f"{proc.pid}.{int(proc.create_time() * 100)}"


def _owner_alive(folder: Path) -> psutil.Process | None:
    """The main process that owns `folder`, if it still runs."""
    pid, _, _ = folder.name.partition(".")
    try:
        proc = psutil.Process(int(pid))
        return proc if _stamp(proc) == folder.name else None
    except (ValueError, psutil.Error):
        return None


def fresh_folder(root: Path) -> Path:
    """This program's own, empty sub-folder of `root`; the sub-folders of programs gone are removed."""
    root.mkdir(parents=True, exist_ok=True)
    for folder in root.iterdir():
        if folder.is_dir() and _owner_alive(folder) is None:
            shutil.rmtree(folder, ignore_errors=True)  # a sibling starting at the same time may race us
    mine = root / _stamp(psutil.Process())
    shutil.rmtree(mine, ignore_errors=True)
    mine.mkdir()
    return mine


def _private_root() -> Path:
    """A folder of this program's alone in the temp dir; those of programs gone (killed) are removed."""
    temp = Path(tempfile.gettempdir())
    for folder in temp.glob(f"{_PRIVATE}*"):
        if folder.is_dir() and _owner_alive(Path(folder.name.removeprefix(_PRIVATE))) is None:
            shutil.rmtree(folder, ignore_errors=True)
    root = temp / f"{_PRIVATE}{_stamp(psutil.Process())}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root.resolve()


def sweep_dead(root: Path) -> None:
    """Remove the live gauge files of processes that are gone (mark_process_dead), in every sub-folder."""
    for folder in (p for p in root.iterdir() if p.is_dir()):
        owner = _owner_alive(folder)
        running = {owner.pid, *(c.pid for c in owner.children(recursive=True))} if owner else set()
        for path in folder.glob("gauge_live*_*.db"):
            pid = path.stem.rpartition("_")[2]
            if pid.isdigit() and int(pid) not in running:
                mark_process_dead(int(pid), str(folder))  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


class AllPrograms(Collector):
    """The sum of every process of every program whose files are under `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def collect(self) -> Any:
        sweep_dead(self.root)
        attempts = 3
        while True:
            try:
                files = glob.glob(str(self.root / "*" / "*.db"))
                return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated
            except FileNotFoundError:  # a starting sibling removed a gone program's folder meanwhile
                attempts -= 1
                if not attempts:
                    raise


def start() -> None:
    """Switch this (main) process to multiprocess mode in a fresh folder and serve the sum on the port.

    Before any value exists and before the pool forks: the pool processes inherit the folder."""
    private = not settings.WORKER_METRICS_DIR
    try:
        root = _private_root() if private else Path(settings.WORKER_METRICS_DIR).resolve()
        mine = fresh_folder(root)
    except OSError as exc:
        raise SystemExit(
            f"worker: cannot use a metrics folder ({exc}): set WORKER_METRICS_DIR to a writable "
            "folder, or METRICS_ENABLED=false"
        ) from None
    _state.update(root=root, mine=mine, private=private, main=os.getpid())
    port, host = settings.WORKER_METRICS_PORT, settings.WORKER_METRICS_HOST
    if port:
        registry = CollectorRegistry()
        registry.register(AllPrograms(root))
        try:
            _state["server"], _ = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            _at_stop()
            raise SystemExit(
                f"worker: cannot serve metrics on {host}:{port}: {exc.strerror or exc} (set WORKER_"
                "METRICS_PORT to a free port, 0 for no listener, or METRICS_ENABLED=false)"
            ) from None
    os.environ[_ENV] = str(mine)
    # prometheus_client chose its value class when it was imported: choose again now that the folder is set.
    values.ValueClass = values.MultiProcessValue()  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


def _at_start(**_: Any) -> None:
    start()


def _in_pool_process(**_: Any) -> None:
    server = _state.get("server")
    if server is not None and os.getpid() != _state["main"]:  # (a solo pool runs tasks in the main process)
        # The listening socket came with the fork: close this copy, so that a pool process outliving its
        # main process cannot hold the port against the next start.
        server.socket.close()
    if "mine" in _state:
        sweep_dead(_state["mine"].parent)  # the process this one replaces may have been killed
        # A live gauge file under this pid is a dead process's (pids are reused): this one has written none yet.
        mark_process_dead(os.getpid(), str(_state["mine"]))  # type: ignore[no-untyped-call]  # unannotated upstream


def _pool_process_exits(**_: Any) -> None:
    if "mine" in _state:
        mark_process_dead(os.getpid(), str(_state["mine"]))  # type: ignore[no-untyped-call]  # prometheus_client leaves it unannotated


def _at_stop(**_: Any) -> None:
    # An orderly stop takes this program's series away with it (the next start would remove them anyway).
    if "mine" in _state:
        shutil.rmtree(_state["root"] if _state["private"] else _state["mine"], ignore_errors=True)


if settings.METRICS_ENABLED:
    # celeryd_init: the `celery worker` program (and `python -m worker`), in its main process, before the
    # pool exists. Not in other processes that import the app (the tests, a publisher).
    signals.celeryd_init.connect(_at_start, weak=False)
    signals.worker_process_init.connect(_in_pool_process, weak=False)
    signals.worker_process_shutdown.connect(_pool_process_exits, weak=False)
    signals.worker_shutdown.connect(_at_stop, weak=False)
