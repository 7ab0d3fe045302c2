"""Pi by the Leibniz series, reported only once its digits are proven.

S_n = 4 * sum_{k<n} (-1)^k / (2k+1).  Even partial sums lie below pi and odd ones above, so
pi is in (S_2m, S_2m+1) with S_2m+1 = S_2m + 4/(4m+1).  S_2m is summed as 4 * sum_{j<m} t_j,
t_j = 2/((4j+1)(4j+3)) (all positive, no cancellation), by the C kernel worker._leibniz, which
returns each chunk as a double-double together with the constants of its rigorous rounding
error bound (see worker/_leibniz.c).  Chunks are added here exactly, as Fractions, and the
bracket [S_2m - E, S_2m+1 + E] (E = the summed error bounds) is tested exactly: the digits are
proven once no rounding boundary (an odd multiple of 0.5 * 10^-decimal) lies in it.  No value
of pi is used anywhere: everything comes from the series.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from worker import _leibniz

log = logging.getLogger(__name__)

MAX_SUPPORTED_DECIMAL = 12

# Rounding error of one kernel call (worker/_leibniz.c): |hi + lo - S| <= c/(1-c) * (hi + lo)
# with c = gamma_K + 4 * N_b * u^2, N_b = the number of folds into the double-double total.
_U = Fraction(1, 2**53)
_GAMMA = _leibniz.ROUNDINGS * _U / (1 - _leibniz.ROUNDINGS * _U)
_BLOCK_PAIRS = _leibniz.LANES * _leibniz.BLOCK  # kernel terms t_j per fold
# Exact sums are integers in units of 2^-1074, the smallest double (see compute_pi).
_SCALE_BITS = 1074
_SCALE = 1 << _SCALE_BITS

# A chunk is at most this many t_j (2^30 series terms, well under a second): bounds how long a
# should_stop request waits and keeps the per-call bound's N_b term negligible.
_MAX_CHUNK_PAIRS = 2**29
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
    # Exact sums kept as integers in units of 2^-_SCALE_BITS (every double is a whole number of
    # them): additions without the gcd of Fraction arithmetic, which cost ~0.5 ms a chunk.
    total = 0  # sum of the kernel's double-doubles = sum t_j up to rounding
    error = 0  # bound on |total - sum_{j<m} t_j|
    fraction = 0.0
    chunk = 1
    last_report = -math.inf
    while True:
        if should_stop is not None and should_stop():
            raise Cancelled(f"cancelled after {2 * m} terms")
        hi, lo = _leibniz.pair_sum(m, m + chunk)
        total += _scaled(hi) + _scaled(lo)
        error += _scaled(_call_error_bound(chunk, hi, lo))
        m += chunk

        # pi lies in [lower, upper] = [4 (total - error), 4 (total + error) + 4 / (4m + 1)].
        rounded = _proven_rounding(4 * (total - error), 4 * (total + error), 4 * m + 1, decimal)
        if rounded is not None:
            digits = _format_digits(rounded, decimal)
            elapsed = time.monotonic() - start
            log.info("pi to %d places: %s after %d terms in %.3f s", decimal, digits, 2 * m, elapsed)
            lower, upper = _bracket(total, error, m)
            return PiResult(decimal=decimal, digits=digits, value=float(digits), terms=2 * m,
                            lower=_float_down(lower), upper=_float_up(upper),
                            error_bound=_float_up(Fraction(4 * error, _SCALE)), elapsed=elapsed)
        if m >= max_pairs:
            raise NotConverged(f"pi to {decimal} places not proven after {2 * m} terms (max_terms={max_terms})")

        partial = 4 * total / _SCALE  # int / int: correctly rounded
        estimate, low_estimate = _estimate_total_terms(partial, 2 * m, decimal)
        fraction = max(fraction, min(2 * m / estimate, _MAX_FRACTION))
        step_terms = progress_step * low_estimate
        chunk = max(1, min(int(_CHUNK_SAFETY * step_terms) // 2, m, _MAX_CHUNK_PAIRS, max_pairs - m))

        if on_progress is not None:
            now = time.monotonic()
            # Every chunk is at most progress_step of the work, so reporting after each one keeps
            # that promise; min_report_interval caps the rate for tasks so short that their 1%
            # takes less time than a report costs (a state-file write is 0.2-0.6 ms on ext4).
            if now - last_report >= min_report_interval:
                lower, upper = _bracket(total, error, m)
                on_progress(Progress(terms=2 * m, fraction=fraction, partial=partial,
                                     lower=_float_down(lower), upper=_float_up(upper)))
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


def _call_error_bound(pairs: int, hi: float, lo: float) -> float:
    """Rigorous bound on one pair_sum call's rounding error: c/(1-c) * (hi + lo), rounded up."""
    folds = pairs // _BLOCK_PAIRS + pairs % _BLOCK_PAIRS
    # Each float operation below rounds to nearest, so the exact value is at most half a step
    # above its result: one step up (nextafter) bounds it from above. Both results are positive
    # (hi + lo is a sum of positive terms) and far from underflow and overflow. This replaced
    # exact Fraction arithmetic that cost ~70 us a chunk (a d=2 task has ~150 chunks).
    sum_up = math.nextafter(hi + lo, math.inf)
    return math.nextafter(_relative_bound(folds) * sum_up, math.inf)


@functools.lru_cache(maxsize=4096)
def _relative_bound(folds: int) -> float:
    """c/(1-c) for a call with `folds` folds (see _U above), rounded up to a float."""
    c = _GAMMA + 4 * folds * _U * _U
    return _float_up(c / (1 - c))


def _scaled(x: float) -> int:
    """x in units of 2^-_SCALE_BITS, exactly (x is a double, so a whole number of them)."""
    numerator, denominator = x.as_integer_ratio()  # denominator: a power of two <= 2^1074
    return numerator << (_SCALE_BITS - denominator.bit_length() + 1)


def _bracket(total: int, error: int, m: int) -> tuple[Fraction, Fraction]:
    """The proven bracket of pi as Fractions (for reports: not needed by the stopping rule)."""
    return Fraction(4 * (total - error), _SCALE), Fraction(4 * (total + error), _SCALE) + Fraction(4, 4 * m + 1)


def _proven_rounding(low: int, high: int, odd: int, decimal: int) -> int | None:
    """round(pi * 10^decimal) if no rounding boundary lies in the bracket, else None.

    The bracket is [low / 2^S, high / 2^S + 4 / odd] (S = _SCALE_BITS); the test is exact: both
    ends are rounded half up to `decimal` places in integer arithmetic and must agree.
    """
    scale = 10**decimal
    # floor(x * scale + 1/2) of each end, as integer floor divisions.
    lowest = (low * scale + (_SCALE >> 1)) >> _SCALE_BITS
    highest = (high * scale * odd + 4 * scale * _SCALE + (_SCALE >> 1) * odd) // (_SCALE * odd)
    return lowest if lowest == highest else None


def _format_digits(rounded: int, decimal: int) -> str:
    text = str(rounded).rjust(decimal + 1, "0")
    return f"{text[:-decimal]}.{text[-decimal:]}"


def _estimate_total_terms(partial: float, terms: int, decimal: int) -> tuple[float, float]:
    """Estimate the terms needed to prove `decimal` places: (best guess, cautious low guess).

    pi ~ S_n + 1/n with an error ~ 1/(4n^3) (Euler-Boole), and the bracket (S_n, S_n+1) has
    half-width ~ 1/n, so the digits are proven once n exceeds 1/(distance from pi to the
    nearest rounding boundary).  The low guess allows generously (1/n^3) for the error of the
    estimate of pi; it sizes the chunks, so that early, rough estimates cannot make them too large.  Both
    are for progress display only: the stopping rule is the exact bracket test.
    """
    estimate = (partial + 1 / terms) * 10**decimal
    distance = abs(estimate - math.floor(estimate) - 0.5) / 10**decimal
    best = max(float(terms), 1 / max(distance, 1e-300))
    return best, min(best, 1 / (distance + 1 / terms**3))


def _float_down(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) <= q else math.nextafter(f, -math.inf)


def _float_up(q: Fraction) -> float:
    f = float(q)
    return f if Fraction(f) >= q else math.nextafter(f, math.inf)
