"""Results and how they are shown: the console table and BENCHMARKS.md.

BENCHMARKS.md is rendered from data that it also carries (a JSON comment at its end), so that
`make soak` can add its section to the report of the last `make bench` without re-running it: a
section measured now replaces the one of the same name, the others are kept with their own date
and command.
"""

from __future__ import annotations

import json
import logging
import re
import statistics
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_DATA_BEGIN = "<!-- bench-data"
_OTHERS_LIMIT = 15.0  # % of the cores taken by other processes above which a run is called disturbed
_DATA_RE = re.compile(r"<!-- bench-data\n(.*?)\n-->", re.S)


@dataclass
class Figure:
    """One measured figure with its target; `runs` are the raw per-run values behind `value`."""

    name: str
    value: float | None
    unit: str
    target: str = ""  # human text, "" when the figure is informational
    passed: bool | None = None  # None: no target
    runs: list[float] = field(default_factory=list)
    how: str = ""  # "median of 5", "max", ...

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Section:
    """What one benchmark measured, with everything needed to reproduce and judge it."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how it was measured, findings
    raw: dict[str, Any] = field(default_factory=dict)  # per-run numbers, rendered as tables/lists
    error: str | None = None  # the benchmark failed to run
    command: str = ""
    commit: str = ""  # the product's checkout when it ran (others may change it between runs)
    date: str = ""
    seconds: float = 0.0
    quick: bool = False
    idle_busy: float | None = None  # % of both cores busy in the second before it ran: others' work skews figures
    others: list[float] = field(default_factory=list)  # % of the cores other processes took, per measured run

    def add(self, name: str, value: float | None, unit: str, *, target: str = "", passed: bool | None = None,
            runs: list[float] | None = None, how: str = "") -> Figure:
        """Append a figure and return it."""
        figure = Figure(name, value, unit, target, passed, list(runs or []), how)
        self.figures.append(figure)
        return figure


def format_value(value: float | None, unit: str) -> str:
    """A figure as a person reads it: 3 significant digits, big rates in scientific notation."""
    if value is None:
        return "n/a"
    if isinstance(value, int):
        return f"{value:,} {unit}".rstrip()
    if unit in ("terms/s",) or abs(value) >= 1e6:
        return f"{value:.3g} {unit}".replace("e+0", "e").replace("e+", "e")
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.3g} {unit}"


def interference(sections: list[Section], limit: float) -> list[str]:
    """One line per section that ran while other processes took more than `limit` % of the cores."""
    lines = []
    for s in sections:
        if s.idle_busy is not None and s.idle_busy > limit:
            lines.append(f"{s.title}: other processes kept {s.idle_busy:.0f}% of the cores busy just before it")
        if s.others and statistics.median(s.others) > limit:
            lines.append(f"{s.title}: other processes took {statistics.median(s.others):.0f}% of the cores in its "
                         "median run; its figures are skewed low")
    return lines


def table_rows(sections: list[Section]) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, value, target, verdict) for every figure of every section."""
    rows = []
    for section in sections:
        if section.error:
            rows.append((section.title, "benchmark failed", section.error[:60], "", "ERROR"))
        for f in section.figures:
            rows.append((section.title, f.name, format_value(f.value, f.unit), f.target, f.verdict))
    return rows


def render_console(sections: list[Section]) -> str:
    """The fixed-width table printed at the end of a run."""
    header = ("benchmark", "figure", "value", "target", "")
    rows = [header, *table_rows(sections)]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = []
    for i, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(widths[j]) for j, cell in enumerate(row)).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(machine: dict[str, str], sections: list[Section]) -> str:
    """The whole of BENCHMARKS.md, data comment included."""
    out = ["# Benchmarks", ""]
    if any(s.quick for s in sections):
        out += ["**Quick mode (BENCH_QUICK=1): tiny sizes for a smoke run; these figures are not the product's.**", ""]
    out += ["Produced by `make bench` (and `make soak` for the soak section) from `bench/`; do not edit by hand.", ""]
    out += ["## Machine", ""]
    out += [f"- {k}: {v}" for k, v in machine.items()]
    out += ["", "## Summary", "", "| benchmark | figure | value | target | verdict |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in table_rows(sections)]
    out += [""]
    for s in sections:
        out += [f"## {s.title}", ""]
        out += [f"- command: `{s.command}`", f"- product commit: {s.commit or 'not recorded'}", f"- date: {s.date}",
                f"- took: {s.seconds:.0f} s"]
        if s.idle_busy is not None:
            out += [f"- cores busy in the second before it started (nothing of the bench running): {s.idle_busy:.0f}%"]
        if s.others:
            busy = sum(1 for v in s.others if v > _OTHERS_LIMIT)
            out += [f"- share of the cores other processes took during its runs: median "
                    f"{statistics.median(s.others):.0f}%, max {max(s.others):.0f}% ({busy} of {len(s.others)} runs "
                    f"above {_OTHERS_LIMIT:g}%)"]
        out += [""]
        if s.error:
            out += [f"**The benchmark failed:** {s.error}", ""]
        out += [f"- {note}" for note in s.notes]
        if s.notes:
            out += [""]
        if s.figures:
            out += ["| figure | value | target | verdict | how | raw runs |", "|---|---|---|---|---|---|"]
            for f in s.figures:
                runs = ", ".join(_raw(v) for v in f.runs)
                out.append(f"| {_md_escape(f.name)} | {format_value(f.value, f.unit)} | {_md_escape(f.target)} | "
                           f"{f.verdict} | {f.how} | {runs} |")
            out += [""]
        for title, table in s.raw.items():
            out += _render_raw(title, table)
    data = {"machine": machine, "sections": [asdict(s) for s in sections]}
    out += [_DATA_BEGIN, json.dumps(data, indent=1), "-->", ""]
    return "\n".join(out)


def _raw(value: float) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _render_raw(title: str, table: Any) -> list[str]:
    """Raw data: a list of same-keyed dicts becomes a table, anything else a JSON block."""
    out = [f"### {title}", ""]
    if isinstance(table, list) and table and all(isinstance(r, dict) for r in table):
        keys = list(dict.fromkeys(k for r in table for k in r))
        out += ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
        for r in table:
            out.append("| " + " | ".join(_md_escape(_cell(r.get(k, ""))) for k in keys) + " |")
    else:
        out += ["```json", json.dumps(table, indent=1), "```"]
    return [*out, ""]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return _raw(value)
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def load_sections(path: Path) -> list[Section]:
    """The sections stored in an earlier report, or [] if there is none (or it cannot be read)."""
    try:
        match = _DATA_RE.search(path.read_text())
    except OSError:
        return []
    if not match:
        return []
    try:
        data = json.loads(match.group(1))
        # Fields a later version of this module dropped are ignored; new ones take their defaults.
        known, figure_known = {f.name for f in fields(Section)}, {f.name for f in fields(Figure)}
        return [
            Section(**{**{k: v for k, v in s.items() if k in known},
                       "figures": [Figure(**{k: v for k, v in f.items() if k in figure_known}) for f in s["figures"]]})
            for s in data["sections"]
        ]
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the data of %s: %s", path, exc)
        return []


def merge(previous: list[Section], current: list[Section], order: list[str]) -> list[Section]:
    """Sections of this run, plus earlier ones it did not re-measure (same mode only), in bench order."""
    quick = any(s.quick for s in current)
    by_name = {s.name: s for s in previous if s.quick == quick}
    by_name.update({s.name: s for s in current})
    return sorted(by_name.values(), key=lambda s: order.index(s.name) if s.name in order else len(order))
