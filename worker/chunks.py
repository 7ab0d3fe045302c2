"""A split calculation on Celery's canvas: its chunks are one group, a chord combines their results.

The chord is Celery's barrier (its result backend counts the chunks in); there is no counter of ours.
Chunks go to a queue of their own (CELERY_QUEUE.chunks) with workers of their own, so a big job's
hundreds of queued chunks never stand between a small task and a free process (README: "Split
calculations"). Every chunk records its progress in the task's one state record (store.update:
atomic against the other chunks); its result, the exact sum of its range, travels in the chord.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from typing import Any

from celery import Task, chord, group

from state.errors import StorageError, UnknownTask
from state.ledger import ChunkLedger
from state.records import FAILURE, REVOKED, SUCCESS, TaskState, utcnow
from worker import metrics, series, split
from worker.app import CHUNK_QUEUE, app, settings
from worker.recording import RUNNING_CEILING, CancelPoll, cancel_requested, finish, store, with_host

log = logging.getLogger(__name__)

_STORAGE_RETRY_DELAY = 2
# chord_unlock's interval between looks: 5 ms per chunk, between 0.1 s and 5 s (poll_interval).
_LOOK_PER_CHUNK, _LOOK_MIN, _LOOK_MAX = 0.005, 0.1, 5.0


# The stamp every chunk carries: the id of the calculation it belongs to.
_STAMP = "pi_task"


def chunk_id(task_id: str, k: int, generation: int) -> str:
    """The Celery task id of chunk k of `task_id` (sent in `generation`): it begins with our task id,
    so Celery's own lines and Flower name the calculation a chunk belongs to (worker/context.py)."""
    return f"{task_id}.{generation}.{k}"


def _step_id(task_id: str, generation: int, step: str) -> str:
    """The Celery task id of the chord's combining step or error path (`step`) of `generation`."""
    return f"{task_id}.{generation}.{step}"


def launch(state: TaskState, plan: split.Plan) -> None:
    """Record the plan in the task's record, then send every chunk and the combining step as one chord."""
    ledger = ChunkLedger(
        start=plan.start, size=plan.size, end=plan.end, prefix_value=4 * plan.prefix_total / series.SCALE
    )
    state = state.evolve(chunks=ledger, terms=2 * plan.start)
    try:
        if store.update(state.id, lambda now: None if now.is_final else state).is_final:
            return  # cancelled meanwhile
    except UnknownTask:  # its record was removed while it waited (the message carries all we need)
        store.write(state)
    log.info("task %s: %d chunks of %d terms", state.id, ledger.total, 2 * plan.size)
    _send(state, range(ledger.total), plan.prefix_total, plan.prefix_error, [])


def _send(state: TaskState, ks: range | list[int], total: int, error: int, counted: list[int]) -> None:
    assert state.chunks is not None
    ledger = state.chunks
    # Each chunk is stamped with its task: a cancellation revokes them all with one stamp (below).
    header = group(
        calc_chunk.signature(
            (state.id, k, *ledger.bounds(k)), queue=CHUNK_QUEUE, task_id=chunk_id(state.id, k, ledger.generation)
        ).stamp(**{_STAMP: state.id})
        for k in ks
    )
    body = combine_chunks.s(state.id, state.decimal, str(total), str(error), counted).set(
        task_id=_step_id(state.id, ledger.generation, "combine"),
        # What logs and Flower show: the chunks' exact sums (hundreds of digits each) would fill it.
        argsrepr=f"([{len(ks)} chunk results], {state.id!r}, {state.decimal}, ...)",
    )
    errback = split_failed.si(state.id).set(task_id=_step_id(state.id, ledger.generation, "failed"))
    chord(header)(body.on_error(errback), interval=poll_interval(len(ks)))


def poll_interval(chunks: int) -> float:
    """How often Celery's chord_unlock looks whether a chord of `chunks` is complete (result backends
    other than Redis, which counts them in natively and ignores this).

    A look reads the chunks' results one by one up to the first missing one (SQLite: ~0.2 ms each), so
    its cost grows with the chunks: at a fixed 0.5 s, a d = 12 job of 894 chunks spent 51 CPU s of
    its 279 s (18% of a core) looking. Looking less often sees the end later: with chunks of ~0.5 s
    on two processes the sum of both costs is least near 5 ms per chunk, where each is about 1% of
    the job (d = 11's 53 chunks: a look every 0.27 s; d = 12's 894: every 4.5 s); never under 0.1 s
    (a d = 9 job of three chunks, 1.6 s) nor over 5 s."""
    return min(_LOOK_MAX, max(_LOOK_MIN, _LOOK_PER_CHUNK * chunks))


@app.task(name="worker.calc_chunk", bind=True, ignore_result=False)  # type: ignore[untyped-decorator]  # untyped
def calc_chunk(self: Task, task_id: str, k: int, j0: int, j1: int) -> dict[str, Any]:
    """Sum pairs [j0, j1) of task `task_id`'s series; record the progress; the exact sum for the chord."""
    try:
        return _compute(task_id, k, j0, j1)
    except StorageError as exc:
        log.error("task %s chunk %d: %s; retrying in %d s", task_id, k, exc, _STORAGE_RETRY_DELAY)
        raise self.retry(exc=exc, countdown=_STORAGE_RETRY_DELAY, max_retries=100) from None


def _compute(task_id: str, k: int, j0: int, j1: int) -> dict[str, Any]:
    try:
        state = store.read(task_id)
    except UnknownTask:
        return {"k": k, "skipped": "the task is gone"}
    if state.is_final or cancel_requested(task_id):
        _stop(state, "cancelled while running")
        return {"k": k, "skipped": state.status}
    deliveries = [0]

    def start(now: TaskState) -> TaskState | None:
        if now.is_final or now.chunks is None:
            return None
        ledger, deliveries[0] = now.chunks.started(k)
        return with_host(now.evolve(chunks=ledger, attempts=max(now.attempts, deliveries[0]), heartbeat=utcnow()))

    state = store.update(task_id, start)
    if deliveries[0] > settings.TASK_MAX_ATTEMPTS:
        reason = (
            f"gave up: chunk {k} (terms {2 * j0} to {2 * j1}) was delivered {deliveries[0]} times; "
            "its worker died each time"
        )
        finish(state, FAILURE, error=reason)
        _revoke_rest(state)
        return {"k": k, "skipped": FAILURE}
    started = time.monotonic()
    sums = split.sum_chunk(j0, j1, stop=CancelPoll(task_id))
    if sums is None:
        _stop(store.read(task_id), "cancelled while running")
        return {"k": k, "skipped": REVOKED}
    metrics.terms_computed(2 * (j1 - j0), time.monotonic() - started)
    total, error = sums
    _record_done(task_id, k, 4 * total / series.SCALE)
    return {"k": k, "total": str(total), "error": str(error)}


def _record_done(task_id: str, k: int, value: float) -> None:
    def done(now: TaskState) -> TaskState | None:
        if now.is_final or now.chunks is None:
            return None
        ledger = now.chunks.finished(k, value)
        share = 100 * (ledger.start + ledger.pairs_done) / ledger.end
        return with_host(
            now.evolve(
                chunks=ledger,
                progress=max(now.progress, min(RUNNING_CEILING, round(share, 2))),
                result=round(ledger.prefix_value, now.decimal),
                terms=2 * (ledger.start + ledger.pairs_done),
                heartbeat=utcnow(),
            )
        )

    try:
        store.update(task_id, done)
    except StorageError as exc:  # only the progress bar misses it: the sum travels in the chord
        log.warning("task %s chunk %d: progress not recorded: %s", task_id, k, exc)


def _stop(state: TaskState, reason: str) -> None:
    """The task was cancelled: record REVOKED (once) and revoke the chunks still waiting."""
    if not state.is_final:
        finish(state, REVOKED, error=reason)
    else:
        metrics.note_outcome(state.status)
    _revoke_rest(state)


def _revoke_rest(state: TaskState) -> None:
    """Revoke the task's chunks still waiting: one broadcast of its stamp, which every worker then
    applies to each chunk as it arrives. Not `revoke(ids)`: for every id, every worker first marks it
    revoked in the result backend; revoking 1,800 chunks that way held the workers' main processes
    (SQLite backend) for about 100 s, long enough to miss the broker's heartbeats. A worker that
    missed the broadcast (started later) still skips them: each chunk looks at its task first."""
    if state.chunks is not None:
        app.control.revoke_by_stamped_headers({_STAMP: state.id})


@app.task(name="worker.combine_chunks")  # type: ignore[untyped-decorator]  # Celery has no type hints
def combine_chunks(
    results: list[dict[str, Any]], task_id: str, decimal: int, carry_total: str, carry_error: str, counted: list[int]
) -> None:
    """The chord's body: add the chunks up exactly and prove the digits, or send the chunks still needed."""
    try:
        state = store.read(task_id)
    except UnknownTask:
        return
    if state.is_final or state.chunks is None or any("skipped" in r for r in results):
        return
    fresh = [r for r in results if r["k"] not in counted]
    total, error = split.combine(fresh, int(carry_total), int(carry_error))
    counted = sorted({*counted, *(r["k"] for r in fresh)})
    ledger = state.chunks
    gone = split.missing([{"k": k} for k in counted], ledger.total)
    if gone:  # a result stored twice left another out of the chord's count: send those again
        log.warning("task %s: %d chunks missing from the results; sending them again", task_id, len(gone))
        _send(_next_generation(state, ledger), gone, total, error, counted)
        return
    rounded = series.prove(total, error, ledger.end, decimal)
    if rounded is not None:
        digits = series.format_digits(rounded, decimal)
        finish(state, SUCCESS, result=float(digits), digits=digits, terms=2 * ledger.end, progress=100.0)
        return
    end = split.extension(ledger.end, decimal, total, ledger.size)
    log.info("task %s: not proven after %d terms; %d terms more", task_id, 2 * ledger.end, 2 * (end - ledger.end))
    extended = _next_generation(state, ledger.extended(end))
    assert extended.chunks is not None
    _send(extended, range(ledger.total, extended.chunks.total), total, error, counted)


def _next_generation(state: TaskState, ledger: ChunkLedger) -> TaskState:
    """`ledger` recorded with the next generation (new task ids for the chunks sent from now on)."""
    new = replace(ledger, generation=ledger.generation + 1)
    return store.update(state.id, lambda now: None if now.is_final else now.evolve(chunks=new))


@app.task(name="worker.split_failed")  # type: ignore[untyped-decorator]  # Celery has no type hints
def split_failed(task_id: str) -> None:
    """The chord's error path: a chunk raised. The task ends as FAILURE with the reason."""
    try:
        state = store.read(task_id)
    except UnknownTask:
        return
    if not state.is_final:
        finish(state, FAILURE, error="a chunk of this calculation failed; see the worker's log")
