"""Pi by the Leibniz series in one process, reported only once its digits are proven.

compute_pi sums the series in chunks of growing size with the C kernel, adds them exactly and tests
the bracket after each (worker/series.py holds that arithmetic and the argument behind it), reporting
progress as it goes. No value of pi is used anywhere: everything comes from the series.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from worker import _leibniz, series

log = logging.getLogger(__name__)

MAX_SUPPORTED_DECIMAL = 12

# A chunk is at most this many t_j: see series.MAX_CALL_PAIRS.
_MAX_CHUNK_PAIRS = series.MAX_CALL_PAIRS
# Chunks stay this far below progress_step of the estimate, so that a slightly low estimate of
# the total still gives a report at least every progress_step of the real total.
_CHUNK_SAFETY = 0.9
# `fraction` stays below 1 until the digits are proven.
_MAX_FRACTION = 0.999


@dataclass(frozen=True)
class Progress:
    """State of a running computation, passed to on_progress after a chunk."""

    terms: int  # series terms summed so far (2*m)
    fraction: float  # estimated share of the work done, 0 <= fraction < 1, non-decreasing
    partial: float  # current partial sum S_2m
    lower: float  # proven bracket of pi, rounding error included (floats rounded outwards)
    upper: float


@dataclass(frozen=True)
class PiResult:
    """Pi to `decimal` places, proven by the bracket [lower, upper]."""

    decimal: int
    digits: str  # exactly `decimal` places, trailing zeros kept
    value: float  # float(digits)
    terms: int  # series terms summed
    lower: float  # proven bracket of pi (rounded outwards)
    upper: float
    error_bound: float  # bound on the rounding error of the computed S_2m (rounded up)
    elapsed: float  # seconds spent


class NotConverged(Exception):
    """max_terms were summed before the digits were proven."""


class Cancelled(Exception):
    """should_stop() returned True."""


def compute_pi(
    decimal: int,
    *,
    on_progress: Callable[[Progress], object] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_terms: int = 4 * 10**12,  # d=12 needs 3.5e12 terms; d=11 2.1e11
    progress_step: float = 0.01,
    min_report_interval: float = 0.0,
) -> PiResult:
    """Sum the Leibniz series until pi's first `decimal` places are proven; return them."""
    _check_decimal(decimal)
    if type(max_terms) is not int or not 2 <= max_terms <= 2 * _leibniz.MAX_J:
        raise ValueError(f"max_terms must be an int in [2, {2 * _leibniz.MAX_J}]")
    if not 0 < progress_step <= 1:
        raise ValueError("progress_step must be in (0, 1]")

    start = time.monotonic()
    max_pairs = max_terms // 2
    m = 0  # pairs summed: S_2m
    # Exact sums kept as integers in units of 2^-SCALE_BITS (every double is a whole number of
    # them): additions without the gcd of Fraction arithmetic, which cost ~0.5 ms a chunk.
    total = 0  # sum of the kernel's double-doubles = sum t_j up to rounding
    error = 0  # bound on |total - sum_{j<m} t_j|
    fraction = 0.0
    chunk = 1
    last_report = -math.inf
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled after {2 * m} terms")
        part_sum, part_error = series.sum_range(m, m + chunk).scaled
        total, error, m = total + part_sum, error + part_error, m + chunk

        # pi lies in [lower, upper] = [4 (total - error), 4 (total + error) + 4 / (4m + 1)].
        rounded = series.prove(total, error, m, decimal)
        if rounded is not None:
            digits = series.format_digits(rounded, decimal)
            elapsed = time.monotonic() - start
            log.info("pi to %d places: %s after %d terms in %.3f s", decimal, digits, 2 * m, elapsed)
            lower, upper = series.bracket(total, error, m)
            return PiResult(
                decimal=decimal,
                digits=digits,
                value=float(digits),
                terms=2 * m,
                lower=series.float_down(lower),
                upper=series.float_up(upper),
                error_bound=series.float_up(Fraction(4 * error, series.SCALE)),
                elapsed=elapsed,
            )
        if m >= max_pairs:
            raise NotConverged(f"pi to {decimal} places not proven after {2 * m} terms (max_terms={max_terms})")

        partial = 4 * total / series.SCALE  # int / int: correctly rounded
        estimate, low_estimate = series.estimate_total_terms(partial, 2 * m, decimal)
        fraction = max(fraction, min(2 * m / estimate, _MAX_FRACTION))
        step_terms = progress_step * low_estimate
        chunk = max(1, min(int(_CHUNK_SAFETY * step_terms) // 2, m, _MAX_CHUNK_PAIRS, max_pairs - m))

        if on_progress is not None:
            now = time.monotonic()
            # Every chunk is at most progress_step of the work, so reporting after each one keeps
            # that promise; min_report_interval caps the rate for tasks so short that their 1%
            # takes less time than a report costs (a state-file write is 0.2-0.6 ms on ext4).
            if now - last_report >= min_report_interval:
                lower, upper = series.bracket(total, error, m)
                on_progress(
                    Progress(
                        terms=2 * m,
                        fraction=fraction,
                        partial=partial,
                        lower=series.float_down(lower),
                        upper=series.float_up(upper),
                    )
                )
                last_report = now


def kernel_rate(terms: int) -> float:
    """Measure the C kernel's speed over `terms` series terms, in terms per second."""
    pairs = max(1, terms // 2)
    start = time.perf_counter()
    _leibniz.pair_sum(0, pairs)
    return 2 * pairs / (time.perf_counter() - start)


def python_loop_sum(n_terms: int) -> float:
    """Return S_n the naive way (a Python loop with pow(-1, i)): the benchmark baseline."""
    total = 0.0
    for i in range(n_terms):
        total += pow(-1, i) / (2 * i + 1)
    return 4 * total


def _check_decimal(decimal: object) -> None:
    if type(decimal) is not int or not 1 <= decimal <= MAX_SUPPORTED_DECIMAL:
        raise ValueError(f"decimal must be an int from 1 to {MAX_SUPPORTED_DECIMAL}, got {decimal!r:.20}")
