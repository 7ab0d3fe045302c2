"""Request: one request message as a connection cut it, and what its reply needs to go back the same way."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

#: THeader's sub-protocol ids (thrift.transport.THeaderTransport.THeaderSubprotocolID); plain framed and
#: unframed requests are binary.
BINARY, COMPACT = 0x00, 0x02

_NONE: Mapping[bytes, bytes] = MappingProxyType({})


@dataclass(frozen=True, slots=True)
class HeaderFrame:
    """What a THeader reply repeats of its request: the sub-protocol, the flags and the sequence id."""

    protocol: int
    flags: int
    sequence_id: int


class Request:
    """The message's bytes (one protocol message, unwrapped), the THeader info headers it came with (raw
    bytes, decoded only by whoever reads them: most calls have no reader), and for a THeader request
    how to frame its reply."""

    __slots__ = ("header", "headers", "payload")

    def __init__(
        self,
        payload: bytes,
        headers: Mapping[bytes, bytes] = _NONE,
        header: HeaderFrame | None = None,
    ) -> None:
        self.payload = payload
        self.headers = headers
        self.header = header

    @property
    def protocol(self) -> int:
        """The protocol of `payload`: BINARY or COMPACT."""
        return BINARY if self.header is None else self.header.protocol
