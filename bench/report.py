"""Results and how they are judged and printed: Figure, Section, the console table.

BENCHMARKS.md and the raw files under bench/results/ are rendered by bench/render.py; sections are
stored and merged (a section measured now replaces the one of the same name, the others are kept
with their own date and command) by bench/results.py.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

OTHERS_LIMIT = 15.0  # % of the cores taken by other processes above which a run is called disturbed


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
    key: bool = False  # shown in the one-screen table at the top of BENCHMARKS.md

    @property
    def verdict(self) -> str:
        return "" if self.passed is None else ("PASS" if self.passed else "MISS")


@dataclass
class Section:
    """What one benchmark measured, with everything needed to reproduce and judge it."""

    name: str
    title: str
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # how it was measured, findings (bullets)
    text: list[str] = field(default_factory=list)  # markdown blocks shown after the figures (analyses)
    raw: dict[str, Any] = field(default_factory=dict)  # per-run numbers, rendered as tables in bench/results/
    error: str | None = None  # the benchmark failed to run
    command: str = ""
    commit: str = ""  # the product's checkout when it ran (others may change it between runs)
    date: str = ""
    seconds: float = 0.0
    quick: bool = False
    cpu: str = ""  # the CPU model it ran on (a section kept from an earlier run may come from another machine)
    idle_busy: float | None = None  # % of both cores busy in the second before it ran: others' work skews figures
    others: list[float] = field(default_factory=list)  # % of the cores other processes took, per measured run

    def add(
        self,
        name: str,
        value: float | None,
        unit: str,
        *,
        target: str = "",
        passed: bool | None = None,
        runs: list[float] | None = None,
        how: str = "",
        key: bool = False,
    ) -> Figure:
        """Append a figure and return it."""
        figure = Figure(name, value, unit, target, passed, list(runs or []), how, key)
        self.figures.append(figure)
        return figure

    def figure(self, name: str) -> Figure | None:
        """The figure called `name`, if any."""
        return next((f for f in self.figures if f.name == name), None)


def format_value(value: float | None, unit: str) -> str:
    """A figure as a person reads it: 3 significant digits, big rates in scientific notation."""
    if value is None:
        return "n/a"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,} {unit}".rstrip()
    if unit in ("terms/s",) or abs(value) >= 1e6:
        return f"{value:.3g} {unit}".replace("e+0", "e").replace("e+", "e").rstrip()
    if abs(value) >= 100:
        return f"{value:,.0f} {unit}".rstrip()
    if abs(value) >= 10:
        return f"{value:.1f} {unit}".rstrip()
    return f"{value:.3g} {unit}".rstrip()


def interference(sections: list[Section], limit: float) -> list[str]:
    """One line per section that ran while other processes took more than `limit` % of the cores."""
    lines = []
    for s in sections:
        if s.idle_busy is not None and s.idle_busy > limit:
            lines.append(f"{s.title}: other processes kept {s.idle_busy:.0f}% of the cores busy just before it")
        if s.others and statistics.median(s.others) > limit:
            lines.append(
                f"{s.title}: other processes took {statistics.median(s.others):.0f}% of the cores in its "
                "median run; its figures are skewed low"
            )
    return lines


def table_rows(sections: list[Section], key_only: bool = False) -> list[tuple[str, str, str, str, str]]:
    """(benchmark, figure, value, target, verdict) for every figure of every section; `key_only`: the key
    figures and every missed target (a miss is never left out of the short table)."""
    rows = []
    for section in sections:
        if section.error:
            rows.append((section.title, "benchmark failed", section.error[:60], "", "ERROR"))
        for f in section.figures:
            if key_only and not f.key and f.passed is not False:
                continue
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
