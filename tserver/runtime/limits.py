"""ServerLimits: what one Thrift server lets its clients use."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ServerLimits:
    """Bounds on connections, message sizes, time and threads of one server."""

    # Threads that run handler methods written as plain functions (they may block); coroutine
    # methods run on the event loop and hold no thread (see dispatch.py).
    workers: int = 8
    idle_timeout: float = 60.0  # close a connection with no complete message for this long
    message_timeout: float = 10.0  # a started message must be complete within this (slowloris)
    max_message_bytes: int = 1 << 20  # larger frame claim / unframed message -> close connection, allocate nothing
    string_length_limit: int = 1 << 20
    container_length_limit: int = 100_000
    # A THeader frame's header area (its info headers: the trace context, ~100 bytes). The format allows
    # 256 KiB; thrift reads it in pure Python (~1.3 us a byte, on the loop). 16 KiB holds W3C's
    # traceparent, tracestate and baggage at their largest.
    max_header_bytes: int = 16 << 10
    max_connections: int = 2_000  # beyond: accept and close at once

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if self.idle_timeout <= 0 or self.message_timeout <= 0:
            raise ValueError("timeouts must be > 0")
        if self.max_message_bytes < 16:
            raise ValueError("max_message_bytes must be >= 16")
        if self.string_length_limit < 0 or self.container_length_limit < 0 or self.max_header_bytes < 0:
            raise ValueError("length limits must be >= 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
