"""At least 10,000 reads (for at least 3 s) of a running task through the gateway while its worker
keeps rewriting the state file: not one error, not one torn file, and progress never goes backwards
for any reader."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.faults.conftest import FaultStack, assert_state_files_sound, running_stack, start_task, wait_running

pytestmark = pytest.mark.timeout(180)

READS = 10_000
CLIENTS = 4
# The worker rewrites the file every 0.1 s: reading for at least this long sees ~30 versions of it,
# however fast this machine serves the 10,000 reads.
MIN_SECONDS = 3.0


@pytest.fixture(scope="module")
def stack(broker_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    # The demo pace keeps a task running for DEMO_MIN_SECONDS, rewriting its file every 0.1 s.
    with running_stack(tmp_path_factory.mktemp("reads"), broker_url, DEMO_MIN_SECONDS="15") as s:
        yield s


def test_ten_thousand_reads_while_the_worker_writes(stack: FaultStack) -> None:
    task_id = start_task(stack, 8)
    wait_running(stack, task_id)
    errors: list[str] = []
    seen: list[list[tuple[str, float, int]]] = [[] for _ in range(CLIENTS)]

    def reader(n: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=5)
        done = 0
        try:
            while done < READS // CLIENTS or time.monotonic() - started < MIN_SECONDS:
                done += 1
                try:
                    conn.request("GET", f"/task/{task_id}")
                    response = conn.getresponse()
                    raw = response.read()
                except (OSError, http.client.HTTPException) as exc:
                    errors.append(f"client {n}: {exc!r}")
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", stack.api_port, timeout=5)
                    continue
                if response.status != 200:
                    errors.append(f"client {n}: {response.status} {raw[:200]!r}")
                    continue
                body = json.loads(raw)
                seen[n].append((body["status"], body["progress"], body["terms"]))
        finally:
            conn.close()

    threads = [threading.Thread(target=reader, args=(n,)) for n in range(CLIENTS)]
    started = time.monotonic()  # read by the readers: set before they start
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    took = time.monotonic() - started

    reads = sum(len(s) for s in seen)
    statuses = {status for s in seen for status, _, _ in s}
    progress_values = {p for s in seen for _, p, _ in s}
    print(
        f"{reads} reads by {CLIENTS} clients in {took:.1f} s ({reads / took:.0f}/s); "
        f"{len(progress_values)} distinct progress values seen; statuses {sorted(statuses)}"
    )
    assert not errors, f"{len(errors)} failed reads, e.g. {errors[:5]}"
    assert reads >= READS
    # A torn or half-written file would read as FAILURE ("corrupt"): only these two may be seen.
    assert statuses <= {"PROGRESS", "SUCCESS"}, statuses
    assert len(progress_values) >= 15, "the worker hardly wrote during the run: the test proves nothing"
    for n, series in enumerate(seen):
        progress = [p for _, p, _ in series]
        terms = [t for _, _, t in series]
        assert progress == sorted(progress), f"client {n}: progress went backwards"
        assert terms == sorted(terms), f"client {n}: terms went backwards"
        assert all((s == "SUCCESS") == (p == 100) for s, p, _ in series), f"client {n}: 100 % before SUCCESS"
        ended = [s for s, _, _ in series].index("SUCCESS") if "SUCCESS" in statuses else len(series)
        assert all(s == "SUCCESS" for s, _, _ in series[ended:]), f"client {n}: SUCCESS went back"
    assert_state_files_sound(stack.state_dir, writers_running=True)

    if "SUCCESS" not in statuses:  # free the worker
        r = httpx.delete(f"{stack.api}/task/{task_id}", timeout=10)
        assert r.status_code in (200, 409), r.text
