"""6. Memory: peak RSS of the gateway, the tserver and the worker programs (main and each pool child),
for every variant.

Nothing is loaded here: the MemoryWatch sampled every product process every 100 ms during the
other benchmarks' load runs; this section reads the peaks, and shows in which run each happened.
The soak's own memory is judged in its section (drift over time rather than a peak); the split
sections' products (other settings) are not counted.
"""

from __future__ import annotations

from bench.memory import MemoryWatch
from bench.report import Section

TITLE = "6. Memory (peak RSS)"
MAX_MB = 150.0
INCLUDED = ("digits", "status", "enqueue", "listing")


def section(watch: MemoryWatch) -> Section | None:
    """Peak RSS per process over every measured phase but the soak; None if no product ran."""
    phases = [name for name in watch.peaks if name.startswith(INCLUDED) and watch.peaks[name]]
    if not phases:
        return None
    sec = Section("memory", TITLE)
    peaks = watch.peak(*phases)
    for role in sorted(peaks, key=_role_order):
        where = max(phases, key=lambda p: watch.peaks[p].get(role, 0.0))
        sec.add(
            role,
            peaks[role],
            "MB",
            target=f"< {MAX_MB:g} MB",
            passed=peaks[role] < MAX_MB,
            runs=[watch.peaks[p].get(role, 0.0) for p in phases],
            how=f'max; peak in "{where}"',
        )
    largest = max(peaks, key=lambda r: peaks[r])
    sec.add(
        f"largest peak: {largest}",
        peaks[largest],
        "MB",
        target=f"< {MAX_MB:g} MB",
        passed=peaks[largest] < MAX_MB,
        how="max over every process and phase",
        key=True,
    )
    sec.notes += [
        f"psutil RSS (MB = 10^6 bytes) of each process sampled every 100 ms during: {', '.join(phases)} "
        f"({watch.samples} samples). Raw runs are the peak in each of those phases, in that order.",
        "A peak is a maximum, not a median: it is the figure a memory limit has to allow for.",
    ]
    sec.raw["peak RSS by phase (MB)"] = [
        {"phase": p, **{role: round(watch.peaks[p][role], 1) for role in sorted(watch.peaks[p], key=_role_order)}}
        for p in phases
    ]
    return sec


def _role_order(role: str) -> tuple[str, int, str]:
    order = ["gateway", "tserver", "worker", "chunks"]
    base, _, label = role.partition(" (")
    program = base.split(" child")[0]
    return (label, order.index(program) if program in order else len(order), base)
