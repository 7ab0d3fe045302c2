"""The layout README.md draws, held by tests: imports point one way, and modules stay small."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"app", "state", "tserver", "worker", "testing", "bench", "tests", "RPC"}
# What each package may import of ours (besides itself).
ALLOWED = {
    "app": {"RPC"},
    "state": {"RPC"},
    "tserver": {"RPC", "state"},
    "worker": {"RPC", "state"},
    "testing": set(),
    "bench": {"RPC", "state", "tserver", "worker", "app", "testing"},
}
MAX_LINES = 300


def _modules(package: str) -> list[Path]:
    return sorted((REPO / package).rglob("*.py"))


def _imported_packages(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module.split(".")[0])
    return found & OURS


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_point_one_way(package: str) -> None:
    wrong = {}
    for path in _modules(package):
        extra = _imported_packages(path) - ALLOWED[package] - {package}
        if extra:
            wrong[str(path.relative_to(REPO))] = sorted(extra)
    assert not wrong, f"imports README's Layout forbids: {wrong}"


def test_no_hand_written_module_is_long() -> None:
    long = {}
    for package in [*ALLOWED, "tests"]:  # everything but the generated gen-py/
        for path in _modules(package):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                long[str(path.relative_to(REPO))] = lines
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_thrift_server_never_builds_the_workers_celery_app() -> None:
    code = (
        "import sys, tserver.server, state.backends, state.files_catalog; "
        "print(sorted(m for m in sys.modules if m == 'worker' or m.startswith('worker.')))"
    )
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"
