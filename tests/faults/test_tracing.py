"""One trace across REST, Thrift and Celery, through the real product with tracing on (OTLP to a
receiver in the test): one POST /calcpi gives spans from the gateway, the Thrift server and the
worker, sharing one trace id and parent-linked in that order; a client generated from the original
IDL (plain binary, unframed) still works with tracing on."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from testing.otlp import OtlpSink, Span
from testing.waiting import wait_for
from tests.e2e.test_thrift import test_client_generated_from_the_original_idl_still_works  # noqa: F401 - run here too
from tests.faults.conftest import FaultStack, running_stack, wait_ended

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def sink() -> Iterator[OtlpSink]:
    with OtlpSink().running() as s:
        yield s


@pytest.fixture(scope="module")
def stack(broker_url: str, sink: OtlpSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    with running_stack(
        tmp_path_factory.mktemp("traced"),
        broker_url,
        OTEL_TRACES_EXPORTER="otlp",
        OTEL_EXPORTER_OTLP_TRACES_ENDPOINT=sink.endpoint,
        OTEL_BSP_SCHEDULE_DELAY="100",
    ) as s:
        yield s


def _chain(spans: list[Span], leaf: Span) -> list[Span]:
    """`leaf` and its ancestors, leaf first, as far as the receiver has them."""
    by_id = {s.span_id: s for s in spans if s.trace_id == leaf.trace_id}
    chain = [leaf]
    while chain[-1].parent_span_id in by_id:
        chain.append(by_id[chain[-1].parent_span_id])
    return chain


def test_one_post_is_one_trace_from_the_gateway_through_thrift_to_the_worker(stack: FaultStack, sink: OtlpSink) -> None:
    task_id = httpx.post(f"{stack.api}/calcpi/5", timeout=10).json()["id"]
    assert wait_ended(stack, task_id)["digits"] == "3.14159"

    def worker_span() -> Span | None:
        return next(
            (
                s
                for s in sink.spans
                if s.service == "worker" and s.name.endswith("worker.calc_pi") and task_id in str(s.attributes)
            ),
            None,
        )

    leaf = wait_for(worker_span, 30, f"the worker's span of task {task_id}")

    def whole_chain() -> list[Span] | None:
        chain = _chain(sink.spans, leaf)
        return chain if chain[-1].parent_span_id in ("", "0" * 16) else None

    chain = wait_for(whole_chain, 30, "every ancestor of the worker's span")
    services = [s.service for s in reversed(chain)]
    # root first: the gateway's spans, then the Thrift server's, then the worker's, in one trace
    first = {name: services.index(name) for name in ("gateway", "tserver", "worker")}
    last = {name: len(services) - 1 - services[::-1].index(name) for name in first}
    assert last["gateway"] < first["tserver"] and last["tserver"] < first["worker"], services
    assert {s.trace_id for s in chain} == {leaf.trace_id}
    names = [f"{s.service}: {s.name}" for s in reversed(chain)]
    print("one trace:", " -> ".join(names))
    assert any(n.startswith("gateway: POST") for n in names) and "tserver: queueCalcPi" in names, names
