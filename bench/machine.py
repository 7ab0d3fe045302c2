"""What the figures were measured on: CPU model, cores, memory, software versions, product commit."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench.variants import Variant

REPO = Path(__file__).resolve().parents[1]


def cpu_model() -> str:
    """The `model name` line of /proc/cpuinfo."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _run(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10, cwd=REPO).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def load_generator() -> str:
    """The HTTP load generator in use: wrk and its version, or the built-in asyncio client."""
    from bench.load import tool

    if tool() != "wrk":
        why = "BENCH_LOAD=asyncio" if shutil.which("wrk") else "wrk is not installed"
        return f"bench/aioload.py (asyncio; {why})"
    # wrk -v prints its version and exits 1; its text goes to stdout.
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True, timeout=10)
    text = (out.stdout or out.stderr).strip()
    return text.splitlines()[0].split(" Copyright")[0] if text else "wrk"


# What runs when the bench starts the product; changes elsewhere (tests, docs) do not change a figure.
_PRODUCT_PATHS = ["app", "tserver", "worker", "gen-py", "supervisord.conf", "setup.py", "pyproject.toml"]


def product_commit() -> str:
    """HEAD of the checkout, and the product files changed since (read-only git calls)."""
    head = _run(["git", "rev-parse", "--short", "HEAD"]) or "unknown"
    changed = _run(["git", "status", "--porcelain", "--untracked-files=all", "--", *_PRODUCT_PATHS]).splitlines()
    if not changed:
        return head
    names = [line.split(maxsplit=1)[-1] for line in changed]
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"{head} + uncommitted changes to {shown}"


def describe(variants: Sequence[Variant] = (), now: datetime | None = None) -> dict[str, str]:
    """The machine section of the report."""
    now = now or datetime.now(UTC)
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    except (OSError, ValueError):
        pass
    return {
        "CPU": cpu_model(),
        "cores": f"{os.cpu_count()} (usable by this process: {len(os.sched_getaffinity(0))})",
        "memory": f"{mem_kb / 2**20:.1f} GiB",
        "OS": f"{platform.system()} {platform.release()}",
        "Python": platform.python_version(),
        "load generator": load_generator(),
        "product": "started as `make run` does (supervisord.conf + `python -m app`) by testing/stack.py: "
        "WORKER_CONCURRENCY=2, DEMO_MIN_SECONDS=0, every other setting at its default unless a section "
        "says otherwise",
        "variants side by side": "; ".join(v.describe() for v in variants) or "files",
        "report written": now.isoformat(timespec="seconds"),
    }
