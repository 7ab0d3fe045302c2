"""Unit tests of the Leibniz kernel (worker._leibniz) and its driver (worker.leibniz)."""

from __future__ import annotations

import itertools
import math
import pathlib
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

import pytest

from worker import leibniz, series

PI_REF = "3.14159265358979323846264338327950288419716939937510"
PI = Fraction(PI_REF)
U = Fraction(1, 2**53)


def expected_digits(decimal: int) -> str:
    return str(Decimal(PI_REF).quantize(Decimal(1).scaleb(-decimal), rounding=ROUND_HALF_UP))


def expected_digits_of(x: Fraction, decimal: int) -> str:
    """x rounded half-up to `decimal` places, exactly (x is the exact value of a float)."""
    k = math.floor(x * 10**decimal + Fraction(1, 2))
    return str(Decimal(k).scaleb(-decimal))


def boundary_distance(decimal: int) -> Fraction:
    """Distance from pi to the nearest rounding boundary at `decimal` places."""
    scale = 10**decimal
    k = math.floor(PI * scale)
    return abs(PI - (k + Fraction(1, 2)) / scale)


def run(decimal: int, **kwargs) -> tuple[leibniz.PiResult, list[leibniz.Progress]]:
    reports: list[leibniz.Progress] = []
    return leibniz.compute_pi(decimal, on_progress=reports.append, **kwargs), reports


# --- the driver --------------------------------------------------------------------------------


@pytest.mark.parametrize("decimal", range(1, 9))
def test_digits_are_correctly_rounded_and_proven(decimal):
    result, _ = run(decimal)
    assert result.digits == expected_digits(decimal)
    assert result.decimal == decimal
    assert len(result.digits.split(".")[1]) == decimal
    assert result.value == float(result.digits)
    assert Fraction(result.lower) < PI < Fraction(result.upper)
    # The proven bracket holds no rounding boundary: both ends round to the reported digits.
    for end in (result.lower, result.upper):
        assert expected_digits_of(Fraction(end), decimal) == result.digits
    assert 0 < result.error_bound < 1e-13
    assert result.terms % 2 == 0


@pytest.mark.parametrize("decimal", range(3, 9))
def test_terms_match_the_series_convergence(decimal):
    # |pi - S_n| ~ 1/n: the digits cannot be proven before n ~ 1/distance-to-boundary, and the
    # driver should not run far past it (chunks are <= 1% of the work).
    result, _ = run(decimal)
    needed = 1 / boundary_distance(decimal)
    assert 0.99 * needed <= result.terms <= 1.05 * needed


def test_bracket_comes_from_the_series():
    result, reports = run(4)
    n = result.terms
    partial = 4 * math.fsum((-1) ** k / (2 * k + 1) for k in range(n))
    assert abs(result.lower - partial) <= result.error_bound + 1e-15
    assert abs(result.upper - (partial + 4 / (2 * n + 1))) <= result.error_bound + 1e-15
    last = reports[-1]
    partial_last = 4 * math.fsum((-1) ** k / (2 * k + 1) for k in range(last.terms))
    assert last.partial == pytest.approx(partial_last, abs=1e-13)


def test_trailing_zeros_are_kept():
    # pi only gets a trailing zero at 12 places (3.141592653590), too slow for a unit test.
    assert series.format_digits(3100, 3) == "3.100"
    assert series.format_digits(3141592653590, 12) == "3.141592653590"
    assert series.format_digits(5, 2) == "0.05"


@pytest.mark.parametrize("decimal", range(1, 9))
def test_progress_is_monotone_bounded_and_frequent(decimal):
    result, reports = run(decimal)
    assert reports
    fractions = [p.fraction for p in reports]
    assert all(0 <= f < 1 for f in fractions)
    assert fractions == sorted(fractions)
    assert fractions[-1] > 0.5
    terms = [0] + [p.terms for p in reports] + [result.terms]
    gaps = [b - a for a, b in itertools.pairwise(terms)]
    assert min(gaps) > 0
    # Terms come in pairs: for d <= 2 (about 120 and 300 terms) 1% is less than one pair.
    assert max(gaps) <= max(2, 0.01 * result.terms)
    for p in reports:
        assert p.terms % 2 == 0
        assert p.lower < p.partial < PI < p.upper
        assert Fraction(p.lower) < PI < Fraction(p.upper)
    widths = [p.upper - p.lower for p in reports]
    assert widths == sorted(widths, reverse=True)


def test_progress_step_and_min_report_interval():
    result, every = run(7, progress_step=0.05)
    terms = [0] + [p.terms for p in every] + [result.terms]
    assert max(b - a for a, b in itertools.pairwise(terms)) <= 0.05 * result.terms
    # min_report_interval caps the rate of reports: the first comes at once, then none closer in
    # time than the interval (a task shorter than the interval reports once).
    result, sparse = run(8, min_report_interval=0.02)
    _, dense = run(8)
    assert 1 <= len(sparse) < len(dense) / 3
    _, once = run(7, min_report_interval=3600.0)
    assert len(once) == 1


def test_should_stop_cancels_between_chunks():
    polls = []

    def should_stop() -> bool:
        polls.append(1)
        return len(polls) >= 3

    reports: list[leibniz.Progress] = []
    with pytest.raises(leibniz.Cancelled):
        leibniz.compute_pi(8, should_stop=should_stop, on_progress=reports.append)
    assert len(polls) == 3
    assert len(reports) == 2


def test_should_stop_false_does_not_interfere():
    result = leibniz.compute_pi(5, should_stop=lambda: False)
    assert result.digits == expected_digits(5)


@pytest.mark.parametrize("bad", [0, -1, 13, 1.5, "3", True, None])
def test_bad_decimal_is_rejected(bad):
    with pytest.raises((ValueError, TypeError), match="1 to 12"):
        leibniz.compute_pi(bad)


def test_not_converged_when_max_terms_is_too_small():
    with pytest.raises(leibniz.NotConverged, match="max_terms=400000"):
        leibniz.compute_pi(5, max_terms=400_000)  # 5 places need ~430,000 terms
    assert leibniz.compute_pi(5, max_terms=440_000).digits == "3.14159"


@pytest.mark.parametrize("bad", [0, 1, 2.5, 2**60])
def test_bad_max_terms_is_rejected(bad):
    with pytest.raises(ValueError, match="max_terms"):
        leibniz.compute_pi(3, max_terms=bad)


def test_module_holds_no_copy_of_pi():
    root = pathlib.Path(leibniz.__file__).parent
    for name in ("leibniz.py", "_leibniz.c"):
        text = root.joinpath(name).read_text()
        assert "1415926" not in text and "math.pi" not in text and "M_PI" not in text


def test_python_loop_sum_is_the_plain_series():
    assert leibniz.python_loop_sum(1) == 4.0
    assert leibniz.python_loop_sum(3) == pytest.approx(4 * (1 - 1 / 3 + 1 / 5))
    assert leibniz.python_loop_sum(10_000) == pytest.approx(
        4 * math.fsum((-1) ** k / (2 * k + 1) for k in range(10_000))
    )
