"""The C kernel worker._leibniz: sums within its documented rounding bound, additive, fast, and the
float shortcut of that bound never below the exact one."""

from __future__ import annotations

import itertools
import math
import threading
import time
from fractions import Fraction

import pytest

from worker import _leibniz, series

PI_REF = "3.14159265358979323846264338327950288419716939937510"
PI = Fraction(PI_REF)
U = Fraction(1, 2**53)


def exact_pair_sum(j0: int, j1: int) -> Fraction:
    return sum((Fraction(2, (4 * j + 1) * (4 * j + 3)) for j in range(j0, j1)), Fraction(0))


def documented_bound(j0: int, j1: int, hi: float, lo: float) -> Fraction:
    """The per-call bound as documented in worker/_leibniz.c, recomputed independently."""
    n = j1 - j0
    per_fold = _leibniz.LANES * _leibniz.BLOCK
    folds = n // per_fold + n % per_fold
    k = _leibniz.ROUNDINGS
    c = k * U / (1 - k * U) + 4 * folds * U * U
    return c / (1 - c) * (Fraction(hi) + Fraction(lo))


# --- the kernel ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("j0", "j1"),
    [
        (0, 0),
        (0, 1),
        (0, 255),
        (0, 256),
        (0, 257),
        (3, 1000),
        (10**6, 10**6 + 777),
        (2**40, 2**40 + 700),
        (2**52 - 300, 2**52),
    ],
)
def test_pair_sum_matches_exact_sum_within_documented_bound(j0, j1):
    hi, lo = _leibniz.pair_sum(j0, j1)
    exact = exact_pair_sum(j0, j1)
    bound = documented_bound(j0, j1, hi, lo)
    assert abs(Fraction(hi) + Fraction(lo) - exact) <= bound
    assert bound <= Fraction(1, 10**14) * exact  # the bound is tight enough to be useful
    assert abs(lo) <= math.ulp(hi) / 2  # a normalised double-double
    assert series.call_error_bound(j1 - j0, hi, lo) >= bound


def test_pair_sum_error_does_not_grow_with_the_number_of_terms():
    # Euler-Boole: pi - S_n = 1/n - 1/(4n^3) + 5/(16n^5) - 61/(64n^7) + ... for even n, so the
    # exact sum of 10^7 pair terms is known to far better than 1e-40.  The compensated fold
    # keeps the real error near u, far inside the worst-case bound.
    m = 10**7
    n = Fraction(2 * m)
    exact = (PI - 1 / n + 1 / (4 * n**3) - 5 / (16 * n**5) + 61 / (64 * n**7)) / 4
    hi, lo = _leibniz.pair_sum(0, m)
    error = abs(Fraction(hi) + Fraction(lo) - exact)
    assert error <= documented_bound(0, m, hi, lo)
    assert error <= 2 * U * exact


def test_pair_sum_is_additive():
    a, b, c = 0, 123_457, 3_000_001
    parts = [_leibniz.pair_sum(*r) for r in ((a, b), (b, c), (a, c))]
    values = [Fraction(hi) + Fraction(lo) for hi, lo in parts]
    bounds = [documented_bound(j0, j1, *p) for (j0, j1), p in zip(((a, b), (b, c), (a, c)), parts, strict=True)]
    assert abs(values[0] + values[1] - values[2]) <= sum(bounds)
    assert values[0] + values[1] != 0 and values[2] > values[1]


def test_pair_sum_total_converges_to_the_leibniz_bracket():
    hi, lo = _leibniz.pair_sum(0, 10**6)
    s = 4 * (Fraction(hi) + Fraction(lo))
    assert s < PI < s + Fraction(4, 4 * 10**6 + 1)


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((-1, 5), ValueError),
        ((5, 4), ValueError),
        ((0, 2**52 + 1), ValueError),
        ((2**64, 2**64 + 1), ValueError),
        ((0.0, 1), TypeError),
        ((0, "1"), TypeError),
        ((0,), TypeError),
    ],
)
def test_pair_sum_validates_arguments(args, error):
    with pytest.raises(error):
        _leibniz.pair_sum(*args)


def test_pair_sum_accepts_the_limits():
    assert _leibniz.pair_sum(2**52, 2**52) == (0.0, 0.0)
    assert _leibniz.pair_sum(0, 0) == (0.0, 0.0)


def test_kernel_constants():
    assert _leibniz.LANES & (_leibniz.LANES - 1) == 0
    assert _leibniz.BLOCK % 2 == 0
    assert _leibniz.PAIR_ROUNDINGS + _leibniz.BLOCK // 2 - 1 + _leibniz.LANES.bit_length() - 1 == _leibniz.ROUNDINGS
    assert _leibniz.MAX_J == 2**52


def test_pair_sum_releases_the_gil():
    # While a long call runs in a thread, this thread keeps running Python code: if the kernel
    # held the GIL, one iteration of the loop below would wait for the whole call.
    duration = []

    def call() -> None:
        start = time.perf_counter()
        _leibniz.pair_sum(0, 10**9)
        duration.append(time.perf_counter() - start)

    worker = threading.Thread(target=call)
    stamps = [time.perf_counter()]
    worker.start()
    while worker.is_alive():
        stamps.append(time.perf_counter())
    worker.join()
    longest_wait = max(b - a for a, b in itertools.pairwise(stamps))
    assert longest_wait < 0.5 * duration[0]


def test_call_error_bound_is_never_below_the_exact_bound():
    # The float shortcut must bound c/(1-c) * (hi + lo) from above for any double-double the
    # kernel can return, power-of-two boundaries included.
    import random

    rng = random.Random(1234)
    cases = [(1.0, 0.0), (1.0, -(2.0**-54)), (0.5, 2.0**-55), (math.pi / 4, 1e-17), (2.0**-40, -(2.0**-94))]
    for _ in range(2000):
        hi = rng.uniform(1e-25, 1.0) * 2.0 ** -rng.randrange(0, 60)
        cases.append((hi, rng.uniform(-0.5, 0.5) * math.ulp(hi)))
    for pairs in (1, 7, series.BLOCK_PAIRS, 3 * series.BLOCK_PAIRS + 5, 2**29):
        folds = pairs // series.BLOCK_PAIRS + pairs % series.BLOCK_PAIRS
        c = series.GAMMA + 4 * folds * U * U
        for hi, lo in cases:
            exact = c / (1 - c) * (Fraction(hi) + Fraction(lo))
            bound = series.call_error_bound(pairs, hi, lo)
            assert Fraction(bound) >= exact
            assert Fraction(bound) <= exact * (1 + Fraction(1, 2**40))  # and still tight
