"""`python -m bench [--quick] [--only NAME] [--skip NAME] [--out BENCHMARKS.md]`: run, print, write.

Benchmarks run in an order that keeps one product alive at a time (the shared one for digits,
status and enqueue, then one per listing size, then the soak's); the report lists them by number.
A benchmark that fails is reported as such and the others still run; the exit status is 1 then,
0 otherwise (a missed target is a finding, not a failure of the harness).
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import ModuleType

import psutil

from bench import digits, enqueue, footprint, kernel, listing, machine, soak, status
from bench.lab import Lab
from bench.memory import MemoryWatch
from bench.plan import plan_from_env
from bench.report import Section, interference, load_sections, merge, render_console, render_markdown
from bench.stack import StackTimeout

log = logging.getLogger("bench")

# Execution order; "memory" is derived from the watch after the others and cannot be run alone.
BENCHMARKS: dict[str, ModuleType] = {
    "kernel": kernel, "digits": digits, "status": status, "enqueue": enqueue, "listing": listing, "soak": soak,
}
REPORT_ORDER = ["kernel", "digits", "status", "listing", "enqueue", "memory", "soak"]
NEEDS_BROKER = {"digits", "status", "enqueue", "listing", "soak"}
DEFAULT_BROKER = "amqp://guest:guest@127.0.0.1:5672//"
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
    parser.add_argument("--only", type=_names, action="extend", default=[], metavar="NAME[,NAME]",
                        help=f"run only these ({', '.join(BENCHMARKS)}); memory comes with any that loads the product")
    parser.add_argument("--skip", type=_names, action="extend", default=[], metavar="NAME[,NAME]",
                        help="run all but these (make bench skips the soak: make soak runs it)")
    parser.add_argument("--quiet-wait", type=float, default=None, metavar="SECONDS",
                        help="before each benchmark, wait up to this long for other processes to leave the cores "
                             "alone (default 30, quick runs 0)")
    parser.add_argument("--out", type=Path, default=None,
                        help="report file (default BENCHMARKS.md; quick runs: run/benchmarks-quick.md)")
    return parser.parse_args(argv)


def check_broker(url: str) -> None:
    """Stop with one clear line if RabbitMQ does not answer."""
    from kombu import Connection

    try:
        with Connection(url, connect_timeout=3) as conn:
            conn.ensure_connection(max_retries=0, timeout=3)
    except Exception as exc:  # noqa: BLE001 - any failure means the same thing here
        raise SystemExit(f"bench: RabbitMQ does not answer at {url} ({exc}); run `bash scripts/ensure-rabbitmq.sh` "
                         "or set BROKER_URL") from None


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
            log.warning("%s=%s in the environment; the bench runs the product with %s=%s", name, os.environ[name],
                        name, value)
        os.environ[name] = value


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s bench %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    plan = plan_from_env(args.quick)
    pin_product_settings()
    if args.quiet_wait is None:
        args.quiet_wait = 0.0 if plan.quick else DEFAULT_QUIET_WAIT
    repo = machine.REPO
    out = args.out or (repo / "run" / "benchmarks-quick.md" if plan.quick else repo / "BENCHMARKS.md")
    selected = [n for n in BENCHMARKS if (not args.only or n in args.only) and n not in args.skip]
    broker = os.environ.get("BROKER_URL", DEFAULT_BROKER)
    if NEEDS_BROKER & set(selected):
        check_broker(broker)
    command = command_line(argv)
    log.info("running %s (%s mode) -> %s", ", ".join(selected), "quick" if plan.quick else "full", out)

    began = time.monotonic()
    sections: list[Section] = []
    with MemoryWatch() as watch:
        lab = Lab(plan=plan, broker_url=broker, watch=watch)
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

    merged = merge(load_sections(out), sections, REPORT_ORDER)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_markdown(machine.describe(), merged))
    sections.sort(key=lambda s: REPORT_ORDER.index(s.name))
    print(render_console(sections))
    for line in interference(sections, BUSY_PERCENT):
        print(f"warning: {line}")
    print(f"\ntotal wall time: {total:.0f} s ({total / 60:.1f} min); report written to {out}")
    return 1 if any(s.error for s in sections) else 0


def _stamp(section: Section, command: str, quick: bool, seconds: float, commit: str) -> None:
    section.command, section.quick, section.seconds, section.commit = command, quick, seconds, commit
    section.date = datetime.now(timezone.utc).isoformat(timespec="seconds")


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
            log.warning("the machine is busy before %s (%.0f%% of the cores): other processes will take CPU from "
                        "the product and its figures will be low", name, busy)
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
    except (Exception, StackTimeout) as exc:  # noqa: BLE001 - reported in the table and the report
        log.exception("benchmark %s failed", name)
        section = Section(name, benchmark.TITLE, error=f"{type(exc).__name__}: {exc}")
    _stamp(section, command, quick, time.monotonic() - start, commit)
    section.idle_busy = busy
    log.info("=== %s done in %.0f s", name, section.seconds)
    return section


if __name__ == "__main__":
    sys.exit(main())
