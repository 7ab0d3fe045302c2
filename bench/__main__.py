"""`python -m bench [--quick] [--only NAME] [--skip NAME] [--variant V] [--out BENCHMARKS.md]`: run, print, write.

Benchmarks run in an order that keeps one set of products alive at a time (the shared ones, one per
variant, for digits, status and enqueue; then one per variant and listing size; then the split
sections' and the soak's); the report lists them by number.
A benchmark that fails is reported as such and the others still run; the exit status is 1 then,
0 otherwise (a missed target is a finding, not a failure of the harness).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType

import psutil

from bench import (
    digits,
    enqueue,
    footprint,
    kernel,
    listing,
    machine,
    observability,
    redis_memory,
    soak,
    split,
    split_long,
    status,
)
from bench.lab import Lab
from bench.memory import MemoryWatch
from bench.plan import plan_from_env
from bench.render import render_markdown
from bench.report import Section, interference, render_console
from bench.results import load_sections, merge, results_dir, save
from bench.stack import StackTimeout
from bench.variants import check_variants, parse_variant

log = logging.getLogger("bench")

# Execution order; "memory" is derived from the watch after the others and cannot be run alone.
BENCHMARKS: dict[str, ModuleType] = {
    "kernel": kernel,
    "digits": digits,
    "status": status,
    "enqueue": enqueue,
    "redis-memory": redis_memory,
    "observability": observability,
    "listing": listing,
    "split": split,
    "split-long": split_long,
    "soak": soak,
}
REPORT_ORDER = [
    "kernel",
    "digits",
    "status",
    "listing",
    "enqueue",
    "memory",
    "soak",
    "redis-memory",
    "split",
    "split-long",
    "observability",
]
NEEDS_BROKER = {"digits", "status", "enqueue", "observability", "listing", "split", "split-long", "soak"}
# Hand-written notes (decisions and the figures behind them) shown in BENCHMARKS.md after the machine.
NOTES = Path(__file__).resolve().parent / "notes"
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
DEFAULT_REDIS = "redis://127.0.0.1:6379/0"
# CPU use (% of all cores) above this while the bench is idle, or not accounted for by the product,
# RabbitMQ and the bench during a run, means something else is using the cores. Loopback networking
# done by the kernel outside any process shows as 5-8% even on a quiet machine.
BUSY_PERCENT = 15.0
DEFAULT_QUIET_WAIT = 30.0


def _names(text: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown benchmark {', '.join(unknown)} (one of: {', '.join(BENCHMARKS)})")
    return names


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes for a smoke run (also BENCH_QUICK=1)")
    parser.add_argument(
        "--only",
        type=_names,
        action="extend",
        default=[],
        metavar="NAME[,NAME]",
        help=f"run only these ({', '.join(BENCHMARKS)}); memory comes with any that loads the product",
    )
    parser.add_argument(
        "--skip",
        type=_names,
        action="extend",
        default=[],
        metavar="NAME[,NAME]",
        help="run all but these (make bench skips the soak and split-long: make soak and make bench-long run them)",
    )
    parser.add_argument(
        "--variant",
        type=parse_variant,
        action="append",
        default=[],
        metavar="NAME=BACKEND[,K=V]",
        help="a product configuration for the HTTP sections (status, enqueue, listing), repeatable; "
        "the first is the baseline (default: files=files and redis=redis)",
    )
    parser.add_argument(
        "--quiet-wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="before each benchmark, wait up to this long for other processes to leave the cores "
        "alone (default 30, quick runs 0)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="report file (default BENCHMARKS.md; quick runs: run/benchmarks-quick.md)",
    )
    return parser.parse_args(argv)


def check_broker(url: str) -> None:
    """Stop with one clear line if RabbitMQ does not answer."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=0, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        raise SystemExit(
            f"bench: RabbitMQ does not answer at {url} ({exc}); run `bash scripts/ensure-rabbitmq.sh` or set BROKER_URL"
        ) from None


def check_redis(url: str) -> None:
    """Stop with one clear line if Redis does not answer."""
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except redis.RedisError as exc:
        raise SystemExit(
            f"bench: Redis does not answer at {url.split('@')[-1]} ({exc}); run "
            "`bash scripts/ensure-redis.sh` or set REDIS_URL"
        ) from None


def command_line(argv: list[str]) -> str:
    """The exact command, as a person would retype it (and the make target that ran it, if any)."""
    env = [f"{k}={os.environ[k]}" for k in ("BENCH_QUICK", "SOAK_SECONDS") if os.environ.get(k)]
    cmd = shlex.join([*env, "python", "-m", "bench", *argv])
    via = os.environ.get("BENCH_INVOCATION")
    return f"{via}  ->  {cmd}" if via else cmd


# Settings that would change what is measured, pinned for every product the bench starts (the
# products inherit this process's environment): no demo pace, and every decimal of the plan allowed.
PINNED_ENV = {"DEMO_MIN_SECONDS": "0", "MAX_DECIMAL": "10"}


def pin_product_settings() -> None:
    """Override, with a warning, any pinned setting that the environment sets otherwise."""
    for name, value in PINNED_ENV.items():
        if os.environ.get(name, value) != value:
            log.warning(
                "%s=%s in the environment; the bench runs the product with %s=%s", name, os.environ[name], name, value
            )
        os.environ[name] = value


def _stop_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM (a CI timeout, `kill`) unwinds like Ctrl-C: every product started is stopped on the way out."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s bench %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = plan_from_env(args.quick)
    pin_product_settings()
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if plan.quick else DEFAULT_QUIET_WAIT
    repo = machine.REPO
    out = args.out or (repo / "run" / "benchmarks-quick.md" if plan.quick else repo / "BENCHMARKS.md")
    results = results_dir(out, repo)
    variants = check_variants(args.variant)
    selected = [n for n in BENCHMARKS if (not args.only or n in args.only) and n not in args.skip]
    broker = os.environ.get("BROKER_URL", DEFAULT_BROKER)
    if NEEDS_BROKER & set(selected):
        check_broker(broker)
    redis_url = os.environ.get("REDIS_URL", DEFAULT_REDIS)
    if {"redis-memory", "split", "split-long"} & set(selected) or any(v.backend == "redis" for v in variants):
        check_redis(redis_url)
    command = command_line(argv)
    log.info("running %s (%s mode) -> %s", ", ".join(selected), "quick" if plan.quick else "full", out)

    began = time.monotonic()
    sections: list[Section] = []
    with MemoryWatch() as watch:
        lab = Lab(plan=plan, broker_url=broker, watch=watch, variants=variants)
        try:
            for name in selected:
                sections.append(_run_one(name, BENCHMARKS[name], lab, command, plan.quick, args.quiet_wait))
        finally:
            lab.close_shared()
        memory = footprint.section(watch)
    if memory is not None:
        _stamp(memory, command, plan.quick, 0.0, machine.product_commit())
        sections.append(memory)
    total = time.monotonic() - began

    described = machine.describe(variants)
    merged = merge(load_sections(results, legacy=out), sections, REPORT_ORDER)
    save(results, merged, sections, described)
    notes = [p.read_text() for p in sorted(NOTES.glob("*.md"))]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(described, merged, notes, os.path.relpath(results, out.parent)))
    sections.sort(key=lambda s: REPORT_ORDER.index(s.name))
    print(render_console(sections))
    for line in interference(sections, BUSY_PERCENT):
        print(f"warning: {line}")
    print(f"\ntotal wall time: {total:.0f} s ({total / 60:.1f} min); report written to {out}, raw runs to {results}")
    return 1 if any(s.error for s in sections) else 0


def _stamp(section: Section, command: str, quick: bool, seconds: float, commit: str) -> None:
    section.command, section.quick, section.seconds, section.commit = command, quick, seconds, commit
    section.cpu = machine.cpu_model()
    section.date = datetime.now(UTC).isoformat(timespec="seconds")


def wait_quiet(name: str, max_wait: float) -> float:
    """Wait (up to max_wait s) until other processes leave the cores alone; the last busy % seen.

    Nothing of the bench runs meanwhile (the shared product idles), so what keeps the cores busy
    is someone else's work, which would take CPU from the product and skew its figures low.
    """
    deadline = time.monotonic() + max_wait
    while True:
        busy = psutil.cpu_percent(interval=1.0)
        if busy <= BUSY_PERCENT:
            return busy
        if time.monotonic() >= deadline:
            log.warning(
                "the machine is busy before %s (%.0f%% of the cores): other processes will take CPU from "
                "the product and its figures will be low",
                name,
                busy,
            )
            return busy
        log.info("waiting for a quiet machine before %s (%.0f%% of the cores busy)", name, busy)


def _run_one(name: str, benchmark: ModuleType, lab: Lab, command: str, quick: bool, quiet_wait: float) -> Section:
    """Run one benchmark; an exception becomes a failed section, so the others still run."""
    log.info("=== %s", name)
    busy = wait_quiet(name, quiet_wait)
    commit = machine.product_commit()
    start = time.monotonic()
    try:
        section = benchmark.run(lab)
    except (Exception, StackTimeout) as exc:
        log.exception("benchmark %s failed", name)
        section = Section(name, benchmark.TITLE, error=f"{type(exc).__name__}: {exc}")
    _stamp(section, command, quick, time.monotonic() - start, commit)
    section.idle_busy = busy
    log.info("=== %s done in %.0f s", name, section.seconds)
    return section


if __name__ == "__main__":
    sys.exit(main())
