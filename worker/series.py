"""The Leibniz series' arithmetic that the proof rests on, shared by a whole calculation
(leibniz.compute_pi) and a split one (worker/split.py).

S_n = 4 * sum_{k<n} (-1)^k / (2k+1). Even partial sums lie below pi and odd ones above, so pi is in
(S_2m, S_2m+1) with S_2m+1 = S_2m + 4/(4m+1). S_2m is 4 * sum_{j<m} t_j, t_j = 2/((4j+1)(4j+3))
(all positive: no cancellation), summed by the C kernel worker._leibniz over ranges of j. The kernel
returns each range's sum as a double-double (hi, lo) with a rigorous bound on its rounding error
(worker/_leibniz.c derives it). Here the ranges are added exactly, as integers in units of 2^-1074
(every double is a whole number of them), and their error bounds too: ranges may be summed in any
order, on any host, in any number of pieces, and the exact total carries the sum of the bounds, never
more. The digits are proven once no rounding boundary lies in [4 (T - E), 4 (T + E) + 4/(4m+1)].
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from fractions import Fraction

from worker import _leibniz

# Rounding error of one kernel call (worker/_leibniz.c): |hi + lo - S| <= c/(1-c) * (hi + lo)
# with c = gamma_K + 4 * N_b * u^2, N_b = the number of folds into the double-double total.
U = Fraction(1, 2**53)
GAMMA = _leibniz.ROUNDINGS * U / (1 - _leibniz.ROUNDINGS * U)
BLOCK_PAIRS = _leibniz.LANES * _leibniz.BLOCK  # kernel terms t_j per fold
SCALE_BITS = 1074
SCALE = 1 << SCALE_BITS
# One kernel call sums at most this many t_j (2^30 series terms, well under a second): bounds how long
# a cancellation waits and keeps each call's N_b term negligible.
MAX_CALL_PAIRS = 2**29


@dataclass(frozen=True)
class RangeSum:
    """sum t_j over j in [j0, j1), as the kernel computed it, with the bound on its rounding error."""

    j0: int
    j1: int
    hi: float
    lo: float
    bound: float  # >= |hi + lo - exact sum|, rounded up

    @property
    def scaled(self) -> tuple[int, int]:
        """(hi + lo, bound) exactly, in units of 2^-SCALE_BITS."""
        return scaled(self.hi) + scaled(self.lo), scaled(self.bound)


def sum_range(j0: int, j1: int) -> RangeSum:
    """One kernel call over [j0, j1) (at most MAX_CALL_PAIRS pairs) and its error bound."""
    hi, lo = _leibniz.pair_sum(j0, j1)
    return RangeSum(j0, j1, hi, lo, call_error_bound(j1 - j0, hi, lo))


def scaled(x: float) -> int:
    """x in units of 2^-SCALE_BITS, exactly (x is a double, so a whole number of them)."""
    numerator, denominator = x.as_integer_ratio()  # denominator: a power of two <= 2^1074
    return numerator << (SCALE_BITS - denominator.bit_length() + 1)


def call_error_bound(pairs: int, hi: float, lo: float) -> float:
    """Rigorous bound on one pair_sum call's rounding error: c/(1-c) * (hi + lo), rounded up."""
    folds = pairs // BLOCK_PAIRS + pairs % BLOCK_PAIRS
    # Each float operation below rounds to nearest, so the exact value is at most half a step
    # above its result: one step up (nextafter) bounds it from above. Both results are positive
    # (hi + lo is a sum of positive terms) and far from underflow and overflow. This replaced
    # exact Fraction arithmetic that cost ~70 us a call (a d=2 task makes ~150 calls).
    sum_up = math.nextafter(hi + lo, math.inf)
    return math.nextafter(relative_bound(folds) * sum_up, math.inf)


@functools.lru_cache(maxsize=4096)
def relative_bound(folds: int) -> float:
    """c/(1-c) for a call with `folds` folds (see U above), rounded up to a float."""
    c = GAMMA + 4 * folds * U * U
    return float_up(c / (1 - c))


def prove(total: int, error: int, m: int, decimal: int) -> int | None:
    """round(pi * 10^decimal) if S_2m (= 4 total, within 4 error, scaled) proves it, else None."""
    return proven_rounding(4 * (total - error), 4 * (total + error), 4 * m + 1, decimal)


def proven_rounding(low: int, high: int, odd: int, decimal: int) -> int | None:
    """round(pi * 10^decimal) if no rounding boundary lies in the bracket, else None.

    The bracket is [low / 2^S, high / 2^S + 4 / odd] (S = SCALE_BITS); the test is exact: both
    ends are rounded half up to `decimal` places in integer arithmetic and must agree.
    """
    scale = 10**decimal
    # floor(x * scale + 1/2) of each end, as integer floor divisions.
    lowest = (low * scale + (SCALE >> 1)) >> SCALE_BITS
    highest = (high * scale * odd + 4 * scale * SCALE + (SCALE >> 1) * odd) // (SCALE * odd)
    return lowest if lowest == highest else None


def bracket(total: int, error: int, m: int) -> tuple[Fraction, Fraction]:
    """The proven bracket of pi as Fractions (for reports: not needed by the stopping rule)."""
    return Fraction(4 * (total - error), SCALE), Fraction(4 * (total + error), SCALE) + Fraction(4, 4 * m + 1)


def format_digits(rounded: int, decimal: int) -> str:
    """round(pi * 10^decimal) as pi's decimal text, trailing zeros kept."""
    text = str(rounded).rjust(decimal + 1, "0")
    return f"{text[:-decimal]}.{text[-decimal:]}"


def estimate_total_terms(partial: float, terms: int, decimal: int) -> tuple[float, float]:
    """Estimate the terms needed to prove `decimal` places: (best guess, cautious low guess).

    pi ~ S_n + 1/n with an error ~ 1/(4n^3) (Euler-Boole), and the bracket (S_n, S_n+1) has
    half-width ~ 1/n, so the digits are proven once n exceeds 1/(distance from pi to the
    nearest rounding boundary). The low guess allows generously (1/n^3) for the error of the
    estimate of pi; it sizes chunks, so that early, rough estimates cannot make them too large. Both
    are estimates only (progress, plans): the stopping rule is the exact bracket test.
    """
    estimate = (partial + 1 / terms) * 10**decimal
    distance = abs(estimate - math.floor(estimate) - 0.5) / 10**decimal
    best = max(float(terms), 1 / max(distance, 1e-300))
    return best, min(best, 1 / (distance + 1 / terms**3))


def float_down(q: Fraction) -> float:
    """The largest double <= q."""
    f = float(q)
    return f if Fraction(f) <= q else math.nextafter(f, -math.inf)


def float_up(q: Fraction) -> float:
    """The smallest double >= q."""
    f = float(q)
    return f if Fraction(f) >= q else math.nextafter(f, math.inf)
