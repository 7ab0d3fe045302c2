"""BENCHMARKS.md (the latest run on one screen, then each section's figures) and the raw files under
bench/results/ (one per section, replaced at every run: every run's numbers, every table)."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench.report import OTHERS_LIMIT, Section, format_value, table_rows


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def provenance(s: Section, current_cpu: str = "") -> str:
    """One line: how, when, on what and how quietly a section was measured."""
    parts = [f"`{s.command}`", f"commit {s.commit or 'not recorded'}", s.date, f"took {s.seconds:.0f} s"]
    if s.cpu and current_cpu and s.cpu != current_cpu:
        parts.append(f"**on another machine: {s.cpu}**")
    elif not s.cpu and current_cpu:
        parts.append("**machine not recorded (an earlier run)**")
    if s.idle_busy is not None:
        parts.append(f"cores busy just before: {s.idle_busy:.0f}%")
    if s.others:
        busy = sum(1 for v in s.others if v > OTHERS_LIMIT)
        parts.append(
            f"others' share during its runs: median {statistics.median(s.others):.0f}%, max "
            f"{max(s.others):.0f}% ({busy} of {len(s.others)} runs above {OTHERS_LIMIT:g}%)"
        )
    return " · ".join(parts)


def render_markdown(machine: dict[str, str], sections: list[Section], notes: list[str], results: str) -> str:
    """The whole of BENCHMARKS.md: `results` is the raw files' folder, relative to it."""
    out = ["# Benchmarks", ""]
    if any(s.quick for s in sections):
        out += ["**Quick mode (BENCH_QUICK=1): tiny sizes for a smoke run; these figures are not the product's.**", ""]
    out += [
        f"Written by `make bench` (`make soak`, `make bench-long` add their sections) from `bench/`; do not edit "
        f"by hand. Every run's numbers are in [{results}/]({results}/), one file per section, replaced at every "
        "run. Targets are ratios measured side by side in one run where a baseline exists; compare ratios, not "
        "absolute figures, across machines.",
        "",
    ]
    out += [
        "## Latest run",
        "",
        "Key figures and every missed target; each section below has its judged ones, its raw file all of them.",
        "",
        "| benchmark | figure | measured | target | verdict |",
        "|---|---|---|---|---|",
    ]
    out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in table_rows(sections, key_only=True)]
    out += ["", "## Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine.items()]
    out += [""]
    for note in notes:
        out += [note.strip(), ""]
    cpu = machine.get("CPU", "")
    for s in sections:
        out += [f"## {s.title}", "", provenance(s, cpu) + f" · raw: [{results}/{s.name}.md]({results}/{s.name}.md)", ""]
        if s.error:
            out += [f"**The benchmark failed:** {s.error}", ""]
        out += [f"- {note}" for note in s.notes]
        if s.notes:
            out += [""]
        shown = [f for f in s.figures if f.key or f.target]
        if shown:
            out += ["| figure | value | target | verdict |", "|---|---|---|---|"]
            out += [
                f"| {_md(f.name)} | {format_value(f.value, f.unit)} | {_md(f.target)} | {f.verdict} |" for f in shown
            ]
            out += [""]
        if len(shown) < len(s.figures):
            more = len(s.figures) - len(shown)
            out += [
                f"{more} more figure{'s' if more > 1 else ''}, and every figure's runs and how it was taken: "
                f"[{results}/{s.name}.md]({results}/{s.name}.md).",
                "",
            ]
        for block in s.text:
            out += [block.strip(), ""]
    return "\n".join(out)


def render_results(s: Section, cpu: str = "") -> str:
    """One section's raw file: its figures with how each was taken and every run, then its raw tables."""
    out = [f"# {s.title}: every run", "", provenance(s, cpu), ""]
    if s.error:
        out += [f"**The benchmark failed:** {s.error}", ""]
    out += [f"- {note}" for note in s.notes]
    out += ["", "| figure | value | target | verdict | how | raw runs |", "|---|---|---|---|---|---|"]
    for f in s.figures:
        runs = ", ".join(_raw(v) for v in f.runs)
        out.append(
            f"| {_md(f.name)} | {format_value(f.value, f.unit)} | {_md(f.target)} | {f.verdict} | "
            f"{_md(f.how)} | {runs} |"
        )
    out += [""]
    for title, table in s.raw.items():
        out += _render_raw(title, table)
    return "\n".join(out)


def _raw(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _render_raw(title: str, table: Any) -> list[str]:
    """Raw data: a list of same-keyed dicts becomes a table, anything else a JSON block."""
    out = [f"## {title}", ""]
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        keys = list(dict.fromkeys(k for r in table for k in r))
        out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in table:
            out.append("| " + " | ".join(_md(_cell(r.get(k, ""))) for k in keys) + " |")
    else:
        out += ["```json", json.dumps(table, indent=1), "```"]
    return [*out, ""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _raw(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
