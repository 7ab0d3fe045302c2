"""`python -m bench --quick` end to end: the harness runs every benchmark against the real product,
prints every section and writes its report and raw files. Functional only: no figure or timing is
asserted (the targets are judged by `make bench` on a quiet machine, not by CI)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {
    "kernel": "1. Leibniz kernel",
    "digits": "2. Time to proven digits",
    "status": "3. Status reads vs /livez",
    "listing": "4. Listing /alltasks",
    "enqueue": "5. Enqueue POST /calcpi/1",
    "memory": "6. Memory (peak RSS)",
    "soak": "7. Soak",
    "redis-memory": "8. Redis memory per task",
    "split": "9. Split calculations",
    "split-long": "10. Split d = 12 on two processes (long)",
    "observability": "11. Metrics and tracing",
}
# Figures the new sections must produce, whatever their values: both backends side by side, split runs.
FIGURES = [
    "c=50: /task (not ended) req/s, redis / files",
    "worker stopped: accepted/s, redis / files",
    "redis: tserver RSS growth",
    "ended task: used_memory per task",
    "speed-up, 2 processes / 1",
    "files: overhead of splitting",
    "chord, redis: time per chunk",
    "record update, redis: one writer",
    "combining step",
    "model: d=12 on 64 hosts",
    "publish layer alone: aio-pika TaskPublisher",
    "c=50: /task (ended) req/s, metrics on / off",
    "enqueue, worker stopped: accepted/s, tracing on / off",
]

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(900)  # a dozen products started, on a machine others may keep busy
def test_quick_bench_runs_every_section(broker_url: str, redis_url: str, tmp_path: Path) -> None:
    out = tmp_path / "BENCHMARKS.md"
    env = {**os.environ, "BROKER_URL": broker_url, "REDIS_URL": redis_url, "SOAK_SECONDS": "4"}
    env.pop("BENCH_INVOCATION", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=780)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the bench stops every product it started on SIGTERM
        stdout, stderr = proc.communicate(timeout=120)
        pytest.fail(f"the quick bench took more than 780 s\n{stdout[-2000:]}\n{stderr[-4000:]}")
    assert proc.returncode == 0, f"exit {proc.returncode}\n{stdout[-2000:]}\n{stderr[-4000:]}"
    # What the bench logged as going wrong, whole records (a failed start's carries its logs' last lines):
    # a figure can be missing because a product did not start.
    records = re.split(r"\n(?=\d{4}-\d\d-\d\d )", stderr)
    trouble = "\n".join(r for r in records if " bench ERROR " in r or " bench WARNING " in r)[-6000:]
    report = out.read_text()
    results = tmp_path / "BENCHMARKS-results"
    for name, title in SECTIONS.items():
        assert title in stdout, f"{title!r} missing from the printed table"
        assert f"## {title}" in report, f"{title!r} missing from the report"
        assert json.loads((results / f"{name}.json").read_text())["title"].startswith(title)
        assert (results / f"{name}.md").read_text().startswith(f"# {title}")
    for figure in FIGURES:
        assert figure in stdout, f"no figure {figure!r}; the bench logged:\n{trouble}"
    assert "ERROR" not in stdout, trouble
    assert "total wall time" in stdout
    assert "Quick mode" in report and "## Latest run" in report and "## Machine" in report
    assert "## Publishing layer: aio-pika adopted" in report and "### d = 12 on more hosts" in report
    assert "## every run" not in report, "raw runs belong in the results folder, not in the report"
    assert "## every run" in (results / "status.md").read_text()


def test_report_keeps_the_sections_a_later_run_did_not_measure(tmp_path: Path) -> None:
    # `make soak` adds its section to the report of the last `make bench`: the stored sections round-trip.
    from bench.render import render_markdown
    from bench.report import Section
    from bench.results import load_sections, merge, save

    order = ["kernel", "status", "soak"]
    bench = [Section("kernel", "1. K", command="make bench"), Section("status", "3. S", command="make bench")]
    bench[0].add("C kernel", 5.5e9, "terms/s", target=">= 5e8", passed=True, runs=[5.4e9, 5.5e9, 5.6e9], key=True)
    bench[1].add("every run figure", 1.0, "ms", runs=[1.0, 2.0])
    folder = tmp_path / "results"
    save(folder, bench, bench, {"CPU": "x"})
    soak = [Section("soak", "7. Soak", command="make soak")]
    merged = merge(load_sections(folder), soak, order)
    save(folder, merged, soak, {"CPU": "x"})
    assert [s.name for s in merged] == order
    assert merged[0].figures[0].runs == [5.4e9, 5.5e9, 5.6e9] and merged[0].command == "make bench"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["machine.json", *(f"{n}.{ext}" for n in order for ext in ("json", "md"))]
    )
    report = render_markdown({"CPU": "x"}, merged, ["## A note"], "results")
    latest = report.split("## Latest run")[1].split("## Machine")[0]
    assert "C kernel" in latest and "every run figure" not in latest, "only key figures and misses on top"
    assert "## A note" in report and "5.4e+09" not in report and "5.4e+09" in (folder / "kernel.md").read_text()
    quick = [Section("soak", "7. Soak", quick=True)]
    assert [s.name for s in merge(load_sections(folder), quick, order)] == ["soak"]


def test_a_report_from_before_the_results_folder_gives_up_its_sections(tmp_path: Path) -> None:
    # The soak measured before bench/results/ existed lives in the old report's data comment.
    from bench.results import load_sections

    old = tmp_path / "BENCHMARKS.md"
    data = {
        "machine": {"CPU": "AMD EPYC"},
        "sections": [
            {
                "name": "soak",
                "title": "7. Soak",
                "figures": [{"name": "req/s", "value": 8426.3, "unit": "req/s", "runs": [1.0], "removed field": 1}],
                "old field": 2,
            }
        ],
    }
    old.write_text(f"# Benchmarks\n<!-- bench-data\n{json.dumps(data)}\n-->\n")
    [soak] = load_sections(tmp_path / "absent", legacy=old)
    assert soak.name == "soak" and soak.cpu == "AMD EPYC" and soak.figures[0].value == 8426.3


def test_variants_are_a_line_of_configuration() -> None:
    import argparse

    from bench.variants import DEFAULT_VARIANTS, check_variants, parse_variant

    v = parse_variant("no-metrics=files,METRICS_ENABLED=false,OTEL_TRACES_EXPORTER=none")
    assert (v.name, v.backend, v.env) == (
        "no-metrics",
        "files",
        {"METRICS_ENABLED": "false", "OTEL_TRACES_EXPORTER": "none"},
    )
    assert check_variants([]) == DEFAULT_VARIANTS
    for bad in ("x=mysql", "X=files", "x=files,lower=1", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_variant(bad)
