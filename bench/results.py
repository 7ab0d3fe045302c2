"""Where a run's sections are kept, and how a run merges with the sections of earlier ones.

Each section is stored as bench/results/<name>.json (its data) beside <name>.md (its raw runs,
readable), both replaced when the section is measured again; BENCHMARKS.md is rendered from the
stored sections, so `make soak` or `make bench-long` adds its section to the last `make bench`
without re-running it. Quick runs keep theirs beside their report (run/benchmarks-quick-results/).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from bench.render import render_results
from bench.report import Figure, Section

log = logging.getLogger(__name__)

# Reports before bench/results/ carried their data in a comment at their end: read once, to keep a
# section (the soak) that a later run does not measure again.
_LEGACY_DATA = re.compile(r"<!-- bench-data\n(.*?)\n-->", re.S)


def results_dir(out: Path, repo: Path) -> Path:
    """bench/results/ for the repository's BENCHMARKS.md; `<report>-results/` beside any other report."""
    if out.resolve() == (repo / "BENCHMARKS.md").resolve():
        return repo / "bench" / "results"
    return out.with_name(f"{out.stem}-results")


def _section(data: dict[str, Any]) -> Section:
    # Fields a later version of this module dropped are ignored; new ones take their defaults.
    known, figure_known = {f.name for f in fields(Section)}, {f.name for f in fields(Figure)}
    return Section(
        **{
            **{k: v for k, v in data.items() if k in known},
            "figures": [Figure(**{k: v for k, v in f.items() if k in figure_known}) for f in data["figures"]],
        }
    )


def load_sections(folder: Path, legacy: Path | None = None) -> list[Section]:
    """The sections stored in `folder` (and, for names not there, in an old report's data comment)."""
    found: dict[str, Section] = {}
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        if path.name == "machine.json":
            continue
        try:
            section = _section(json.loads(path.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("ignoring %s: %s", path, exc)
            continue
        found[section.name] = section
    for section in _legacy(legacy):
        found.setdefault(section.name, section)
    return list(found.values())


def _legacy(path: Path | None) -> list[Section]:
    try:
        match = _LEGACY_DATA.search(path.read_text()) if path is not None else None
    except OSError:
        return []
    if not match:
        return []
    try:
        data = json.loads(match.group(1))
        cpu = str(data.get("machine", {}).get("CPU", ""))
        sections = [_section(s) for s in data["sections"]]
    except (ValueError, TypeError, KeyError) as exc:
        log.warning("ignoring the data of %s: %s", path, exc)
        return []
    for s in sections:
        s.cpu = s.cpu or cpu
    return sections


def merge(previous: list[Section], current: list[Section], order: list[str]) -> list[Section]:
    """Sections of this run, plus earlier ones it did not re-measure (same mode only), in bench order."""
    quick = any(s.quick for s in current)
    by_name = {s.name: s for s in previous if s.quick == quick and s.name in order}
    by_name.update({s.name: s for s in current})
    return sorted(by_name.values(), key=lambda s: order.index(s.name))


def save(folder: Path, sections: list[Section], current: list[Section], machine: dict[str, str]) -> None:
    """Write the sections measured now (and any kept one without files yet): data and raw runs."""
    folder.mkdir(parents=True, exist_ok=True)
    now = {s.name for s in current}
    for s in sections:
        data, raw = folder / f"{s.name}.json", folder / f"{s.name}.md"
        if s.name in now or not data.exists() or not raw.exists():
            data.write_text(json.dumps(asdict(s), indent=1) + "\n")
            raw.write_text(render_results(s, machine.get("CPU", "")) + "\n")
    (folder / "machine.json").write_text(json.dumps(machine, indent=1) + "\n")
