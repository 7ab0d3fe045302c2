"""testing/: the ports every started product listens on, and what a failed start reports."""

from __future__ import annotations

import socket
from pathlib import Path

from testing.stack import Stack
from testing.waiting import free_port


def test_free_port_never_hands_out_a_port_twice() -> None:
    # bind(0) picks among some 14,000 ports at random: 2,000 picks repeat one almost surely (birthday
    # bound), and two listeners of one product on one port is a start-up failure.
    ports = [free_port() for _ in range(2_000)]
    assert len(set(ports)) == len(ports)


def test_a_free_port_can_be_listened_on() -> None:
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
        s.listen()
        assert s.getsockname()[1] == port


def test_a_stacks_log_tails_name_each_file_and_keep_only_its_last_lines(tmp_path: Path) -> None:
    stack = Stack(root=tmp_path, broker_url="amqp://unused")
    stack.log_dir.mkdir()
    (tmp_path / "gateway.out").write_text("".join(f"gateway line {i}\n" for i in range(100)))
    (stack.log_dir / "tserver.log").write_bytes(b"bad byte \xff\nlast tserver line\n")
    tails = stack.log_tails(lines=3)
    assert tails.splitlines() == [
        "--- gateway.out",
        "gateway line 97",
        "gateway line 98",
        "gateway line 99",
        "--- tserver.log",
        "bad byte \ufffd",
        "last tserver line",
    ]
