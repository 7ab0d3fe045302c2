"""`python -m bench --quick` end to end: the harness runs every benchmark against the real product,
prints every section and writes its report. Functional only: no figure or timing is asserted (the
targets are judged by `make bench` on a quiet machine, not by CI)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = [
    "1. Leibniz kernel", "2. Time to proven digits", "3. Status reads vs /livez", "4. Listing /alltasks",
    "5. Enqueue POST /calcpi/1", "6. Memory (peak RSS)", "7. Soak",
]

pytestmark = pytest.mark.e2e


def test_quick_bench_runs_every_section(broker_url: str, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "BROKER_URL": broker_url, "SOAK_SECONDS": "4"}
    env.pop("BENCH_INVOCATION", None)
    proc = subprocess.run([sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    report = out.read_text()
    for title in SECTIONS:
        assert title in proc.stdout, f"{title!r} missing from the printed table"
        assert f"## {title}" in report, f"{title!r} missing from the report"
    assert "ERROR" not in proc.stdout
    assert "total wall time" in proc.stdout
    assert "Quick mode" in report and "## Machine" in report and "<!-- bench-data" in report


def test_report_keeps_the_sections_a_later_run_did_not_measure(tmp_path: Path) -> None:
    # `make soak` adds its section to the report of the last `make bench`: the data comment must round-trip.
    from bench.report import Section, load_sections, merge, render_markdown

    bench = [Section("kernel", "1. K", command="make bench"), Section("status", "3. S", command="make bench")]
    bench[0].add("C kernel", 5.5e9, "terms/s", target=">= 5e8", passed=True, runs=[5.4e9, 5.5e9, 5.6e9])
    out = tmp_path / "BENCHMARKS.md"
    out.write_text(render_markdown({"CPU": "x"}, bench))
    soak = [Section("soak", "7. Soak", command="make soak")]
    merged = merge(load_sections(out), soak, ["kernel", "status", "soak"])
    assert [s.name for s in merged] == ["kernel", "status", "soak"]
    assert merged[0].figures[0].runs == [5.4e9, 5.5e9, 5.6e9] and merged[0].command == "make bench"
    quick = [Section("soak", "7. Soak", quick=True)]
    assert [s.name for s in merge(load_sections(out), quick, ["kernel", "status", "soak"])] == ["soak"]
