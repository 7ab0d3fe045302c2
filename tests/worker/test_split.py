"""worker/split.py: chunks cover every term once whatever the cut, and the error bound still proves
12 decimals when the sum is assembled from thousands of chunks."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from worker import series, split

PI_REF = Fraction("3.14159265358979323846264338327950288419716939937510")


@settings(max_examples=60, deadline=None)
@given(
    j0=st.integers(0, 10**7), length=st.integers(1, 3 * 10**6), cuts=st.lists(st.integers(1, 3 * 10**6), max_size=12)
)
def test_chunks_cover_every_term_once(j0: int, length: int, cuts: list[int]) -> None:
    # Any cut of [j0, j1) into chunks, summed chunk by chunk and combined in any order, equals the
    # unsplit sum of the same range to within the summed error bounds, and its bound is no worse.
    j1 = j0 + length
    edges = sorted({j0, j1, *(j0 + c for c in cuts if c < length)})
    results = []
    for k, (a, b) in enumerate(itertools.pairwise(edges)):
        total, error = split.sum_chunk(a, b)
        results.append({"k": k, "total": str(total), "error": str(error)})
    results.reverse()  # the order chunks finish in changes nothing
    total, error = split.combine(results + results[:1], 0, 0)  # a result reported twice counts once
    assert split.missing(results, len(edges) - 1) == []
    whole_total, whole_error = split.sum_chunk(j0, j1)
    assert abs(total - whole_total) <= error + whole_error
    exact = sum(Fraction(2, (4 * j + 1) * (4 * j + 3)) for j in range(j0, min(j1, j0 + 2000)))
    if j1 <= j0 + 2000:  # short ranges: against the exact rational sum as well
        assert abs(Fraction(total, series.SCALE) - exact) <= Fraction(error, series.SCALE)


def test_a_missing_chunk_is_found() -> None:
    results = [{"k": k, "total": "0", "error": "0"} for k in (0, 1, 3)]
    assert split.missing(results, 5) == [2, 4]


def test_twelve_decimals_are_still_proven_from_thousands_of_chunks() -> None:
    # d=12 needs ~3.5e12 terms: too slow to sum here, so the bound is assembled the way the product
    # assembles it, from each chunk's own bound, with the chunks' sums taken from the integral of
    # t_j (within 1e-6 relative: plenty for a bound that is ~1e-15 relative). At the planned end the
    # bracket, widened by 4 * (the summed bounds) on each side, must clear pi's distance from the
    # nearest 12-decimal boundary: so the plan proves the digits without going back for more terms.
    plan = split.plan(12, min_terms=10**10, chunk_terms=4 * 10**9, max_chunks=5000)
    assert plan is not None
    distance = abs(PI_REF * 10**12 - math.floor(PI_REF * 10**12) - Fraction(1, 2)) / 10**12
    bounds = {}
    for chunks in (plan.chunks, 2000, 5000):
        size = math.ceil((plan.end - plan.start) / chunks)
        bound = Fraction(plan.prefix_error, series.SCALE)
        for k in range(chunks):
            a, b = plan.start + k * size, min(plan.start + (k + 1) * size, plan.end)
            if a >= b:
                break
            approx = math.log((4 * b + 1) * (4 * a + 3) / ((4 * a + 1) * (4 * b + 3))) / 2  # integral of t_j
            bound += Fraction(series.call_error_bound(b - a, approx, 0.0))
        bounds[chunks] = 4 * bound
        # pi - S_n = 1/n - 1/n^3 + ... (Euler-Boole) for n = 2m: each side of the bracket is within 1/n of pi.
        assert 4 * bound + Fraction(1, 2 * plan.end) < distance, (chunks, float(4 * bound), float(distance))
    # More chunks do not widen the bound: each is relative to its own positive sum.
    assert max(bounds.values()) < min(bounds.values()) * Fraction(1001, 1000), {k: float(v) for k, v in bounds.items()}
    print(
        f"d=12: {plan.chunks} chunks, 2*end = {2 * plan.end:.3e} terms; 4E = {float(bounds[5000]):.3e} "
        f"with 5000 chunks; distance to the boundary {float(distance):.3e}"
    )


def test_nine_decimals_summed_in_two_thousand_chunks_are_pis() -> None:
    # The real thing, in one process: d=9 (~1.1e10 terms, ~2-4 s here) in 2000 chunks, combined
    # out of order, proves the digits at the planned end.
    plan = split.plan(9, min_terms=1, chunk_terms=2, max_chunks=2000)
    assert plan is not None and plan.chunks == 2000
    results = []
    for k in reversed(range(plan.chunks)):
        a = plan.start + k * plan.size
        total, error = split.sum_chunk(a, min(a + plan.size, plan.end))
        results.append({"k": k, "total": str(total), "error": str(error)})
    total, error = split.combine(results, plan.prefix_total, plan.prefix_error)
    rounded = series.prove(total, error, plan.end, 9)
    assert rounded is not None and series.format_digits(rounded, 9) == "3.141592654"


@settings(max_examples=40, deadline=None)
@given(decimal=st.integers(7, 12), chunk_terms=st.integers(2, 10**11), max_chunks=st.integers(1, 5000))
def test_the_plan_cuts_as_few_equal_chunks_as_the_limits_allow(decimal: int, chunk_terms: int, max_chunks: int) -> None:
    # Whole chunks of SPLIT_CHUNK_TERMS overshot the estimate by up to one chunk (7% more work at
    # d = 9); equal chunks overshoot it by less than a pair each.
    whole = split.plan(decimal, min_terms=1, chunk_terms=10**15, max_chunks=1)
    plan = split.plan(decimal, min_terms=1, chunk_terms=chunk_terms, max_chunks=max_chunks)
    assert whole is not None and plan is not None and whole.chunks == 1
    needed = whole.end - whole.start  # the estimate with 1% to spare, in pairs
    largest = max(1, chunk_terms // 2, math.ceil(needed / max_chunks))
    assert plan.start == whole.start and plan.end - plan.start == plan.chunks * plan.size
    assert plan.chunks == math.ceil(needed / largest) <= max_chunks
    assert plan.size <= largest
    assert 0 <= plan.chunks * plan.size - needed < plan.chunks


def test_chord_looks_are_spaced_by_the_number_of_chunks() -> None:
    from worker.chunks import poll_interval

    assert poll_interval(3) == 0.1  # a small job's end is seen within 0.1 s
    assert poll_interval(53) == pytest.approx(0.265)  # a look reads ~0.2 ms per chunk: ~2% of a core
    assert poll_interval(894) == pytest.approx(4.47)
    assert poll_interval(10**6) == 5.0
