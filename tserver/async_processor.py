"""AsyncCalls: runs the handler methods that are coroutines, for a generated Thrift Processor.

The generated `Processor.process_<name>` calls the handler synchronously, so a handler that waits
(for RabbitMQ's publisher confirm, say) would hold a pool thread the whole time; with ten starts in
flight that meant ten threads contending for the GIL (measured: ~80 futex calls per start). A
handler method defined `async def` is run here instead, on the server's event loop: the same
decoding, the same exception mapping and the same reply bytes as the generated code produces,
driven by the generated `<name>_args` / `<name>_result` classes and their `thrift_spec`.
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Callable
from typing import Any

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[Any], TProtocolBase]


class AsyncCalls:
    """The coroutine methods of a processor's handler, and how to run one from request bytes."""

    def __init__(self, processor: Any) -> None:
        # Generated Processors keep the handler and their method map here; other processors have
        # no coroutine methods.
        handler = getattr(processor, "_handler", None)
        module = sys.modules[type(processor).__module__]
        self._handler = handler
        self._calls: dict[str, tuple[type, type, list[str], dict[type, str]]] = {}
        for name in getattr(processor, "_processMap", {}):
            if not inspect.iscoroutinefunction(getattr(handler, name, None)):
                continue
            args_cls, result_cls = getattr(module, f"{name}_args"), getattr(module, f"{name}_result")
            arg_names = [spec[2] for spec in args_cls.thrift_spec if spec is not None]
            # Declared exceptions are the result's fields other than `success` (id 0).
            raises = {spec[3][0]: spec[2] for spec in result_cls.thrift_spec if spec is not None and spec[0] != 0}
            self._calls[name] = (args_cls, result_cls, arg_names, raises)

    @property
    def methods(self) -> frozenset[str]:
        """Names of the methods run here."""
        return frozenset(self._calls)

    async def process(self, message: bytes, protocol: ProtocolFactory) -> bytes:
        """Decode one call, await the handler, return the reply bytes (as Processor.process would)."""
        iprot = protocol(TMemoryBuffer(message))
        name, _, seqid = iprot.readMessageBegin()
        args_cls, result_cls, arg_names, raises = self._calls[name]
        args = args_cls()
        args.read(iprot)
        iprot.readMessageEnd()
        result: Any = result_cls()
        msg_type = TMessageType.REPLY
        try:
            result.success = await getattr(self._handler, name)(*(getattr(args, a) for a in arg_names))
        except TTransportException:
            raise
        except TApplicationException as exc:
            log.exception("TApplication exception in handler")
            msg_type, result = TMessageType.EXCEPTION, exc
        except Exception as exc:  # noqa: BLE001 - mapped as the generated code maps it
            field = next((f for cls, f in raises.items() if isinstance(exc, cls)), None)
            if field is not None:
                setattr(result, field, exc)
            else:
                log.exception("Unexpected exception in handler")
                msg_type = TMessageType.EXCEPTION
                result = TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error")
        out = TMemoryBuffer()
        oprot = protocol(out)
        oprot.writeMessageBegin(name, msg_type, seqid)
        result.write(oprot)
        oprot.writeMessageEnd()
        return out.getvalue()
