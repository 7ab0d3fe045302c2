"""Dispatcher: runs one call of a generated Thrift Processor, where its handler method says it runs.

Where a call runs is declared once, by the handler method itself:

* ``async def`` -- awaited on the server's event loop. It holds no thread while it waits (for
  RabbitMQ's publisher confirm, for Redis, or for a thread the method hands its file I/O to).
* ``def`` -- run in the server's bounded thread pool (``ServerLimits.workers``), as the stock
  Thrift servers run every call: it may block.

The generated ``Processor.process_<name>`` calls the handler synchronously, so a coroutine method
is run here instead, with the same decoding, the same exception mapping and the same reply bytes as
the generated code produces, driven by the generated ``<name>_args`` / ``<name>_result`` classes
and their ``thrift_spec``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import sys
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from thrift.protocol.TProtocol import TProtocolBase
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[Any], TProtocolBase]


@dataclass(frozen=True)
class _Coroutine:
    """How to run one coroutine method: its generated structs, argument names and declared exceptions."""

    args_cls: type
    result_cls: type
    arg_names: list[str]
    raises: dict[type, str]  # exception class -> the result field that carries it


class Dispatcher:
    """Turns one request message into its reply bytes, on the loop or in the pool."""

    def __init__(self, processor: Any, protocol: ProtocolFactory) -> None:
        self.processor = processor
        self._protocol = protocol
        # Generated Processors keep the handler and their method map here.
        self._handler = getattr(processor, "_handler", None)
        module = sys.modules[type(processor).__module__]
        self._coroutines: dict[str, _Coroutine] = {}
        for name in getattr(processor, "_processMap", {}):
            if not inspect.iscoroutinefunction(getattr(self._handler, name, None)):
                continue
            args_cls, result_cls = getattr(module, f"{name}_args"), getattr(module, f"{name}_result")
            arg_names = [spec[2] for spec in args_cls.thrift_spec if spec is not None]
            # Declared exceptions are the result's fields other than `success` (id 0).
            raises = {spec[3][0]: spec[2] for spec in result_cls.thrift_spec if spec is not None and spec[0] != 0}
            self._coroutines[name] = _Coroutine(args_cls, result_cls, arg_names, raises)

    @property
    def coroutine_methods(self) -> frozenset[str]:
        """Names of the methods awaited on the loop."""
        return frozenset(self._coroutines)

    async def dispatch(self, message: bytes, pool: Executor) -> bytes:
        """The reply to `message` (b"" for a oneway call); decoding errors propagate."""
        iprot = self._protocol(TMemoryBuffer(message))
        name, _, seqid = iprot.readMessageBegin()
        call = self._coroutines.get(name)
        if call is None:
            # A plain method, or one the processor does not know (it answers UNKNOWN_METHOD).
            return await asyncio.get_running_loop().run_in_executor(pool, self.process, message)
        return await self._await(call, name, seqid, iprot)

    def process(self, message: bytes) -> bytes:
        """Decode one message, call the generated processor, return the reply bytes (blocking)."""
        otrans = TMemoryBuffer()
        self.processor.process(self._protocol(TMemoryBuffer(message)), self._protocol(otrans))
        return bytes(otrans.getvalue())

    async def _await(self, call: _Coroutine, name: str, seqid: int, iprot: TProtocolBase) -> bytes:
        args = call.args_cls()
        args.read(iprot)
        iprot.readMessageEnd()
        result: Any = call.result_cls()
        msg_type = TMessageType.REPLY
        try:
            result.success = await getattr(self._handler, name)(*(getattr(args, a) for a in call.arg_names))
        except TTransportException:
            raise
        except TApplicationException as exc:
            log.exception("TApplication exception in handler")
            msg_type, result = TMessageType.EXCEPTION, exc
        except Exception as exc:  # mapped as the generated code maps it
            field = next((f for cls, f in call.raises.items() if isinstance(exc, cls)), None)
            if field is not None:
                setattr(result, field, exc)
            else:
                log.exception("Unexpected exception in handler")
                msg_type = TMessageType.EXCEPTION
                result = TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error")
        out = TMemoryBuffer()
        oprot = self._protocol(out)
        oprot.writeMessageBegin(name, msg_type, seqid)
        result.write(oprot)
        oprot.writeMessageEnd()
        return bytes(out.getvalue())
