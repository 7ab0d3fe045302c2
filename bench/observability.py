"""11. Metrics and tracing: what seeing inside the product costs its hot paths (docs/observability.md).

Status reads and enqueue (sections 3 and 5, run as they are) on three products of the files backend side
by side, runs alternating: metrics on (the default), metrics off (METRICS_ENABLED=false in every
process), and tracing on in every process (OTEL_TRACES_EXPORTER=console: each span written as JSON to the
process's log, the most expensive exporter, since it serialises every span on the spot where `otlp`
batches them to a collector on another host). Target: metrics on at most 5% slower than off; tracing
is reported.
"""

from __future__ import annotations

import dataclasses

from bench import enqueue, status
from bench.lab import Lab
from bench.report import Figure, Section
from bench.variants import Variant

TITLE = "11. Metrics and tracing"

ON, OFF, TRACING = "metrics-on", "metrics-off", "tracing"
VARIANTS = (
    Variant(ON, "files"),
    Variant(OFF, "files", {"METRICS_ENABLED": "false"}),
    Variant(TRACING, "files", {"OTEL_TRACES_EXPORTER": "console"}),
)
MIN_ON_VS_OFF = 0.95  # metrics on: at most 5% slower


def _ratio(
    section: Section, source: Section, name: str, label: str, *, inverse: bool, target: float | None, key: bool
) -> None:
    """Copy one `A / B` ratio figure of `source` as `label`, inverted if asked, judged against `target`."""
    found: Figure | None = source.figure(name)
    if found is None or found.value is None:
        section.add(label, None, "x", how=f"missing from {source.name}: {name}")
        return
    value = 1 / found.value if inverse else found.value
    runs = [1 / r if inverse else r for r in found.runs if r]
    section.add(
        label,
        value,
        "x",
        target=f">= {target}x" if target is not None else "",
        passed=(value >= target) if target is not None else None,
        runs=runs,
        how=found.how,
        key=key,
    )


def run(lab: Lab) -> Section:
    """Sections 3 and 5 on the three products, and the ratios that answer the question."""
    section = Section("observability", TITLE)
    lab.close_shared()
    top = max(lab.plan.connections)
    plan = dataclasses.replace(lab.plan, connections=(top,))  # where section 3's targets apply
    own = Lab(plan=plan, broker_url=lab.broker_url, watch=lab.watch, variants=VARIANTS)
    try:
        reads = status.run(own)
        writes = enqueue.run(own)
    finally:
        own.close_shared()
    ended, live = status.ROUTES["ended"], status.ROUTES["live"]
    for route in (ended, live):
        _ratio(
            section,
            reads,
            f"c={top}: {route} req/s, {OFF} / {ON}",
            f"c={top}: {route} req/s, metrics on / off",
            inverse=True,
            target=MIN_ON_VS_OFF,
            key=True,
        )
        _ratio(
            section,
            reads,
            f"c={top}: {route} CPU-bound req/s, {OFF} / {ON}",
            f"c={top}: {route} CPU-bound req/s, metrics on / off",
            inverse=True,
            target=None,
            key=False,
        )
        _ratio(
            section,
            reads,
            f"c={top}: {route} req/s, {TRACING} / {ON}",
            f"c={top}: {route} req/s, tracing on / off",
            inverse=False,
            target=None,
            key=route == ended,
        )
    _ratio(
        section,
        writes,
        f"worker stopped: accepted/s, {OFF} / {ON}",
        "enqueue, worker stopped: accepted/s, metrics on / off",
        inverse=True,
        target=MIN_ON_VS_OFF,
        key=True,
    )
    _ratio(
        section,
        writes,
        f"worker stopped: accepted/s, {TRACING} / {ON}",
        "enqueue, worker stopped: accepted/s, tracing on / off",
        inverse=False,
        target=None,
        key=True,
    )
    errors = sum(int(f.value or 0) for s in (reads, writes) for f in s.figures if f.name.startswith("errors"))
    section.add("errors (non-2xx, socket)", errors, "", target="0", passed=errors == 0)
    section.error = reads.error or writes.error
    section.others = reads.others + writes.others
    section.notes += [
        "Products side by side: " + "; ".join(v.describe() for v in VARIANTS) + ".",
        f"Status reads as in section 3 (at {top} connections only) and enqueue as in section 5 (same load, "
        "runs and alternation); every figure of both is in the raw file. Ratios are of the medians; runs: "
        "per-round pairs.",
        f"Target: metrics on >= {MIN_ON_VS_OFF}x the req/s of metrics off (at most 5% slower); tracing reported.",
    ]
    section.raw.update({f"status: {k}": v for k, v in reads.raw.items()})
    section.raw.update({f"enqueue: {k}": v for k, v in writes.raw.items()})
    section.raw["status figures"] = [_row(f) for f in reads.figures]
    section.raw["enqueue figures"] = [_row(f) for f in writes.figures]
    return section


def _row(figure: Figure) -> dict[str, object]:
    return {"figure": figure.name, "value": figure.value, "unit": figure.unit, "how": figure.how}
