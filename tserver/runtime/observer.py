"""CallObserver: what the server tells whoever watches its calls (metrics, traces), and nothing else.

The runtime knows no metrics library and no tracer: the service's wiring passes an observer in
(tserver/observed.py), or None, and then a call costs nothing more than before. For every request that
names a method, `begin` is called on the loop, in the call's own asyncio task, before the arguments are
decoded; `end` is called in the same task once the reply is encoded (or the call failed), so whatever
`begin` makes current (a span) is current while the handler runs. A request that cannot be decoded far
enough to name a method is `rejected`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TMessageType, TType

#: What became of a call (the label `outcome`): answered; answered with an exception the IDL declares;
#: answered with TApplicationException INTERNAL_ERROR, or failed so that the connection was closed;
#: the request could not be decoded, or names no method of the IDL.
OK, IDL_ERROR, INTERNAL_ERROR, DECODE_ERROR = "ok", "idl_error", "internal_error", "decode_error"
OUTCOMES = (OK, IDL_ERROR, INTERNAL_ERROR, DECODE_ERROR)
#: The method named for a request whose name is not one of the IDL's (a hostile client's choice must
#: not become a label or a span name).
UNKNOWN = "unknown"


class CallObserver(Protocol):
    """Watches the calls of one server; every method is called on its loop."""

    def begin(self, method: str, headers: Mapping[bytes, bytes]) -> object:
        """A call of `method` (an IDL name or UNKNOWN) starts; `headers` are its THeader info headers
        (empty for other framings). Returns what `end` is given back."""
        ...

    def end(self, token: object, outcome: str, error: BaseException | None = None) -> None:
        """The call `begin` returned `token` for has ended with `outcome` (one of OUTCOMES); `error`: the
        exception that ended it, when one did."""
        ...

    def rejected(self) -> None:
        """A request could not be decoded far enough to name a method; its connection is closed."""
        ...


def outcome_of_reply(prot: TProtocolBase) -> str:
    """The outcome of a reply that the generated processor wrote, read back through `prot` (used only for
    plain methods: a coroutine method's outcome is known where the dispatcher maps its exceptions)."""
    _, msg_type, _ = prot.readMessageBegin()
    if msg_type == TMessageType.EXCEPTION:
        return INTERNAL_ERROR
    prot.readStructBegin()
    _, field_type, field_id = prot.readFieldBegin()
    # The result struct holds `success` (id 0, absent for void) or one declared exception.
    return OK if field_type == TType.STOP or field_id == 0 else IDL_ERROR
