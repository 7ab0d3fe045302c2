"""Splitting one calculation into chunks that any worker process on any host can compute.

Plan: the first PLAN_PAIRS pair terms (a fraction of a millisecond) give an estimate of pi good to
~1e-15 (S_n + 1/n is off by ~1/(4n^3), plus the float's own rounding), and from it the number of terms
the digits will need, within a fraction of a percent. Work below SPLIT_MIN_TERMS is computed in one
piece as before; above it, the remaining pairs, with 1% to spare, are cut into equal chunks of at
most SPLIT_CHUNK_TERMS terms.

Chunks: each sums its range with the kernel in calls of CALL_PAIRS pairs (a cancellation is seen
between two calls, within tens of milliseconds) and returns the exact sum and error bound of its
range as integers in units of 2^-1074 (worker/series.py). Combining them is exact, so how many chunks
there are, and in which order they finish, changes nothing in the proof: the error bound of the
whole is the sum of the chunks' bounds, each relative to its own positive sum.

Combine: the chunks' results are checked to cover the plan once each, added to the planned prefix,
and the bracket is tested as for a whole calculation. If the digits are not proven yet (the estimate
was short), more chunks are planned after the last; chunks missing from the results (a result stored
twice by a worker killed before its acknowledgement) are sent again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from worker import series

#: Pairs summed to plan a calculation (~0.02 ms): S_n + 1/n then misses pi by ~1/(4n^3) = 1e-16.
PLAN_PAIRS = 2**16
#: Pairs per kernel call inside a chunk: a cancellation waits for at most one call (~10-40 ms).
CALL_PAIRS = 2**26
# The plan asks for this much more than the estimate, so that it is rarely extended.
_MARGIN = 1.01


@dataclass(frozen=True)
class Plan:
    """A split calculation: the prefix summed while planning, and the chunks after it."""

    prefix_total: int  # exact sum of t_j, j < start (scaled, see series)
    prefix_error: int
    start: int  # first pair of the chunks
    end: int  # pairs planned in all
    size: int  # pairs per chunk

    @property
    def chunks(self) -> int:
        return math.ceil((self.end - self.start) / self.size)


def plan(decimal: int, min_terms: int, chunk_terms: int, max_chunks: int) -> Plan | None:
    """The chunks for `decimal` places, or None when the work is small enough for one process."""
    head = series.sum_range(0, PLAN_PAIRS)
    total, error = head.scaled
    best = _terms_needed(4 * total / series.SCALE, 2 * PLAN_PAIRS, decimal)
    needed = math.ceil(_MARGIN * best / 2) - PLAN_PAIRS
    if best <= min_terms or needed <= 0:
        return None
    # As few chunks as SPLIT_CHUNK_TERMS allows, all of one size: the plan then overshoots by less than
    # a pair per chunk, where whole chunks of SPLIT_CHUNK_TERMS overshot by up to one chunk (at d = 9,
    # three chunks of 4e9 terms for 1.13e10 needed: 7% more work than computing it in one piece).
    largest = max(1, chunk_terms // 2, math.ceil(needed / max_chunks))
    chunks = max(1, math.ceil(needed / largest))
    size = math.ceil(needed / chunks)
    end = PLAN_PAIRS + size * chunks
    return Plan(total, error, PLAN_PAIRS, end, size)


def extension(end: int, decimal: int, total: int, size: int) -> int:
    """Where to plan up to when the digits were not proven at `end` pairs (sum `total`, scaled)."""
    best = _terms_needed(4 * total / series.SCALE, 2 * end, decimal)
    return end + size * max(1, math.ceil((_MARGIN * best / 2 - end) / size))


def _terms_needed(partial: float, terms: int, decimal: int) -> float:
    """Terms after which the bracket, widened by the sum's rounding error bound, clears the nearest
    rounding boundary. That bound is ~c*pi whatever the chunks (c = series.relative_bound: 3.3e-15),
    1e-14: at d=12, where pi is 2.9e-13 from the boundary, it asks 3.7% more terms than 1/distance."""
    best, _ = series.estimate_total_terms(partial, terms, decimal)
    room = 1 / best - series.relative_bound(1) * partial
    return max(float(terms), 1 / room) if room > 0 else math.inf


def sum_chunk(j0: int, j1: int, stop: Any = None) -> tuple[int, int] | None:
    """The exact sum and error bound of pairs [j0, j1) (scaled); None if `stop()` said so first."""
    total = error = 0
    for a in range(j0, j1, CALL_PAIRS):
        if stop is not None and stop():
            return None
        part_total, part_error = series.sum_range(a, min(a + CALL_PAIRS, j1)).scaled
        total, error = total + part_total, error + part_error
    return total, error


def missing(results: list[dict[str, Any]], chunks: int) -> list[int]:
    """Chunks with no result (each result names its chunk `k`)."""
    have = {r["k"] for r in results}
    return [k for k in range(chunks) if k not in have]


def combine(results: list[dict[str, Any]], prefix_total: int, prefix_error: int) -> tuple[int, int]:
    """The exact sum and error bound of the prefix and every chunk (one result per chunk counted)."""
    total, error, seen = prefix_total, prefix_error, set()
    for result in results:
        if result["k"] in seen:
            continue
        seen.add(result["k"])
        total, error = total + int(result["total"]), error + int(result["error"])
    return total, error
