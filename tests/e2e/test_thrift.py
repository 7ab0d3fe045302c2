"""The Thrift port, called directly with stock generated clients (unframed, as the original's client)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from thrift.protocol import TBinaryProtocol
from thrift.transport import TSocket, TTransport

from RPC import RPCcelery
from RPC.ttypes import BadDecimal, BadTask
from testing.stack import Stack
from testing.waiting import wait_for

# The original demo's contract as its clients know it: fields 1-6 of calcResult and three methods.
ORIGINAL_IDL = textwrap.dedent("""
    namespace py ORIG
    struct calcResult {
      1: required string id, 2: required string status, 3: required string pushqtime,
      4: optional string starttime, 5: optional string stoptime, 6: optional double result
    }
    exception BadDecimal { 1: string message }
    exception BadTask { 1: string message }
    service RPCcelery {
      string startCalcPi(1: i8 decimal) throws (1: BadDecimal bd)
      calcResult getTaskStatus(1: string uuid) throws (1: BadTask bt)
      list<calcResult> listTasks()
    }
""")


@pytest.fixture
def client(stack: Stack) -> Iterator[RPCcelery.Client]:
    transport = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", stack.tserver_port))
    transport.open()
    try:
        yield RPCcelery.Client(TBinaryProtocol.TBinaryProtocol(transport))
    finally:
        transport.close()


def test_stock_unframed_client_runs_a_task(stack: Stack, client: RPCcelery.Client) -> None:
    task_id = client.startCalcPi(4)
    done = wait_for(lambda: client.getTaskStatus(task_id).status == "SUCCESS", 30, "the task")
    assert done
    result = client.getTaskStatus(task_id)
    assert result.digits == "3.1416" and result.result == 3.1416 and result.decimal == 4
    assert task_id in {t.id for t in client.listTasks()}
    assert client.getHostStatus().cpu.count >= 1


@pytest.mark.parametrize("decimal", [0, -1, 11, 127, -128])
def test_bad_decimal_raises_the_idl_exception(client: RPCcelery.Client, decimal: int) -> None:
    with pytest.raises(BadDecimal) as caught:
        client.startCalcPi(decimal)
    assert caught.value.message == "decimal must be an integer from 1 to 10"
    assert (caught.value.min_decimal, caught.value.max_decimal) == (1, 10)


@pytest.mark.parametrize(
    "task_id",
    [
        "",
        "../../etc/passwd",
        "/etc/passwd",
        "..",
        ".",
        "x" * 100_000,
        "\x00",
        "é" * 36,
        "00000000-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-000000000000/../x",
    ],
)
def test_hostile_ids_raise_bad_task(client: RPCcelery.Client, task_id: str) -> None:
    with pytest.raises(BadTask):
        client.getTaskStatus(task_id)
    assert client.getHostStatus().hostname  # the connection is still good


def test_client_generated_from_the_original_idl_still_works(stack: Stack, tmp_path: Path) -> None:
    (tmp_path / "original.thrift").write_text(ORIGINAL_IDL)
    subprocess.run(
        ["thrift", "--gen", "py", "-out", str(tmp_path), str(tmp_path / "original.thrift")], check=True, timeout=60
    )
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(tmp_path)!r})
        from ORIG import RPCcelery
        from ORIG.ttypes import BadDecimal
        from thrift.protocol import TBinaryProtocol
        from thrift.transport import TSocket, TTransport
        t = TTransport.TBufferedTransport(TSocket.TSocket("127.0.0.1", {stack.tserver_port}))
        t.open()
        c = RPCcelery.Client(TBinaryProtocol.TBinaryProtocol(t))
        try:
            c.startCalcPi(0)
        except BadDecimal as e:
            print("bad:", e.message)
        tid = c.startCalcPi(3)
        for _ in range(600):
            r = c.getTaskStatus(tid)
            if r.status == "SUCCESS":
                break
            time.sleep(0.05)
        print(r.status, r.result, len(c.listTasks()) > 0)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["bad: decimal must be an integer from 1 to 10", "SUCCESS 3.142 True"]
