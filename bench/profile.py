"""`python -m bench.profile`: where a product process spends its CPU under one load, per variant.

For each variant (default: files and redis) a product is started, the load runs (POST /calcpi/1 with
the worker stopped, reads of not-ended tasks, or chords of 900 empty-ish chunks) while py-spy
(`pip install py-spy`) samples one of its processes (the tserver by default); the samples are folded
into the functions that cost the most, by own time and by inclusive time, printed side by side.
py-spy pauses nothing (--nonblocking).
"""

from __future__ import annotations

import argparse
import collections
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from bench.lab import StackSpec
from bench.load import Request, run_load
from bench.split_chords import BIG_DECIMAL, settings
from bench.splitrun import run_task, split_env
from bench.stack import processes, purge_queue, running_stack, start_worker, stop_worker
from bench.variants import check_variants, parse_variant

log = logging.getLogger("bench.profile")


def _frame(line: str) -> str:
    """`func (path/file.py:line)` -> `func (file.py)`: lines of one function folded together."""
    name, _, where = line.partition(" (")
    return f"{name} ({Path(where.split(':')[0]).name})" if where else name


def fold(raw: Path) -> tuple[int, collections.Counter[str], collections.Counter[str]]:
    """Samples, own time and inclusive time per function, from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")[1:]]  # the first is the thread
        total += n
        if frames:
            own[frames[-1]] += n
        for f in set(frames):
            inclusive[f] += n
    return total, own, inclusive


def _py_spy() -> str:
    """py-spy on the PATH or beside this Python."""
    beside = Path(sys.executable).parent / "py-spy"
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is None:
        raise SystemExit("bench.profile: py-spy is not installed (pip install py-spy)")
    return found


def _chords(api: str, seconds: int) -> None:
    """Chords of 900 empty-ish chunks, one after the other, for `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run_task(api, BIG_DECIMAL, 300, 0.05)


def profile(broker: str, spec: StackSpec, label: str, load: str, role: str, seconds: int, out: Path) -> Path:
    """Start a product, run the load while py-spy samples `role`; the raw samples' file."""
    env = {**spec.env, **(split_env(settings(100, 900)) if load == "chords" else {})}
    with running_stack(broker, f"profile-{label}", backend=spec.backend, env=env) as stack:
        if load == "chords":
            raw = out / f"{label}-{role.replace(' ', '-')}-{load}.txt"
            spy = [
                _py_spy(),
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                "250",
                "--duration",
                str(seconds),
                "--pid",
                str(processes(stack)[role].pid),
                "--output",
                str(raw),
            ]
            recorder = threading.Thread(target=subprocess.run, args=(spy,), kwargs={"capture_output": True})
            recorder.start()
            _chords(stack.api, seconds)
            recorder.join()
            return raw
        stop_worker(stack)
        try:
            mix = [Request("POST", "/calcpi/1")]
            if load == "reads":
                with httpx.Client(base_url=stack.api, timeout=10) as client:
                    mix = [Request("GET", f"/task/{client.post('/calcpi/3').json()['id']}") for _ in range(64)]
            pid = processes(stack)[role].pid
            raw = out / f"{label}-{role.replace(' ', '-')}-{load}.txt"
            spy = [
                _py_spy(),
                "record",
                "--nonblocking",
                "--format",
                "raw",
                "--rate",
                "250",
                "--duration",
                str(seconds),
                "--pid",
                str(pid),
                "--output",
                str(raw),
            ]
            recorder = threading.Thread(target=subprocess.run, args=(spy,), kwargs={"capture_output": True})
            recorder.start()
            result = run_load(stack.api, mix, 10 if load == "enqueue" else 50, seconds)
            recorder.join()
            log.info("%s, %s: %.0f req/s during the profile", label, load, result.rps)
        finally:
            purge_queue(stack)
            start_worker(stack)
    return raw


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--load",
        choices=("enqueue", "reads", "chords"),
        default="enqueue",
        help="chords: d=6 cut into 900 empty-ish chunks, again and again (role e.g. 'chunks child 1')",
    )
    parser.add_argument("--role", default="tserver", help="gateway, tserver, worker child 1, ...")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--variant", type=parse_variant, action="append", default=[])
    parser.add_argument("--out", type=Path, default=None, help="folder for py-spy's raw samples (kept)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    broker = os.environ.get("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    for v in check_variants(args.variant):
        raw = profile(broker, StackSpec(v.backend, v.env), v.name, args.load, args.role, args.seconds, out)
        total, own, inclusive = fold(raw)
        print(f"\n## {v.name}: {args.role} under {args.load}, {total} samples ({raw})\n")
        print("| own % | function | | inclusive % | function |\n|---:|---|---|---:|---|")
        for (f1, n1), (f2, n2) in zip(own.most_common(args.top), inclusive.most_common(args.top), strict=False):
            print(f"| {100 * n1 / total:.1f} | {f1} | | {100 * n2 / total:.1f} | {f2} |")


if __name__ == "__main__":
    main()
