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

A request is decoded with the protocol it came in (binary; compact inside a THeader frame) and answered
in the same. With a CallObserver (observer.py), each call is reported to it with its outcome.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import struct
import sys
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from thrift.protocol.TProtocol import TProtocolBase, TProtocolException
from thrift.Thrift import TApplicationException, TMessageType
from thrift.transport.TTransport import TMemoryBuffer, TTransportException

from tserver.runtime.observer import (
    DECODE_ERROR,
    IDL_ERROR,
    INTERNAL_ERROR,
    OK,
    UNKNOWN,
    CallObserver,
    outcome_of_reply,
)
from tserver.runtime.request import Request

log = logging.getLogger(__name__)

ProtocolFactory = Callable[[Any], TProtocolBase]
# Errors that mean the request bytes could not be decoded (fastbinary raises OverflowError on limits).
DECODE_ERRORS = (
    TProtocolException,
    TTransportException,
    EOFError,
    OverflowError,
    UnicodeDecodeError,
    struct.error,
    ValueError,
)


@dataclass(frozen=True)
class _Coroutine:
    """How to run one coroutine method: its generated structs, argument names and declared exceptions."""

    args_cls: type
    result_cls: type
    arg_names: list[str]
    raises: dict[type, str]  # exception class -> the result field that carries it


class Dispatcher:
    """Turns one request message into its reply bytes, on the loop or in the pool."""

    def __init__(
        self, processor: Any, protocols: Mapping[int, ProtocolFactory], observer: CallObserver | None = None
    ) -> None:
        self.processor = processor
        self._protocols = protocols  # by Request.protocol
        self._observer = observer
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
        self._methods = frozenset(getattr(processor, "_processMap", ()))

    @property
    def coroutine_methods(self) -> frozenset[str]:
        """Names of the methods awaited on the loop."""
        return frozenset(self._coroutines)

    async def dispatch(self, request: Request, pool: Executor) -> bytes:
        """The reply to `request` (b"" for a oneway call); decoding errors propagate."""
        protocol = self._protocols[request.protocol]
        iprot = protocol(TMemoryBuffer(request.payload))
        if self._observer is not None:
            return await self._observed(self._observer, request, iprot, protocol, pool)
        name, _, seqid = iprot.readMessageBegin()
        call = self._coroutines.get(name)
        if call is None:
            # A plain method, or one the processor does not know (it answers UNKNOWN_METHOD).
            return await asyncio.get_running_loop().run_in_executor(pool, self.process, request.payload, protocol)
        return (await self._await(call, name, seqid, iprot, protocol))[0]

    def process(self, message: bytes, protocol: ProtocolFactory) -> bytes:
        """Decode one message, call the generated processor, return the reply bytes (blocking)."""
        otrans = TMemoryBuffer()
        self.processor.process(protocol(TMemoryBuffer(message)), protocol(otrans))
        return bytes(otrans.getvalue())

    async def _observed(
        self, observer: CallObserver, request: Request, iprot: TProtocolBase, protocol: ProtocolFactory, pool: Executor
    ) -> bytes:
        try:
            name, _, seqid = iprot.readMessageBegin()
        except DECODE_ERRORS:
            observer.rejected()
            raise
        method = name if name in self._methods else UNKNOWN
        token = observer.begin(method, request.headers)
        try:
            call = self._coroutines.get(name)
            if call is not None:
                reply, outcome = await self._await(call, name, seqid, iprot, protocol)
            else:
                # In a copy of this context: what the observer made current (a span) is current there too.
                context = contextvars.copy_context()
                reply = await asyncio.get_running_loop().run_in_executor(
                    pool, context.run, self.process, request.payload, protocol
                )
                outcome = (
                    DECODE_ERROR
                    if method == UNKNOWN
                    else outcome_of_reply(protocol(TMemoryBuffer(reply)))
                    if reply
                    else OK
                )  # b"": oneway
        except BaseException as exc:
            observer.end(token, DECODE_ERROR if isinstance(exc, DECODE_ERRORS) else INTERNAL_ERROR, exc)
            raise
        observer.end(token, outcome)
        return reply

    async def _await(
        self, call: _Coroutine, name: str, seqid: int, iprot: TProtocolBase, protocol: ProtocolFactory
    ) -> tuple[bytes, str]:
        args = call.args_cls()
        args.read(iprot)
        iprot.readMessageEnd()
        result: Any = call.result_cls()
        msg_type, outcome = TMessageType.REPLY, OK
        try:
            result.success = await getattr(self._handler, name)(*(getattr(args, a) for a in call.arg_names))
        except TTransportException:
            raise
        except TApplicationException as exc:
            log.exception("TApplication exception in handler")
            msg_type, result, outcome = TMessageType.EXCEPTION, exc, INTERNAL_ERROR
        except Exception as exc:  # mapped as the generated code maps it
            field = next((f for cls, f in call.raises.items() if isinstance(exc, cls)), None)
            if field is not None:
                setattr(result, field, exc)
                outcome = IDL_ERROR
            else:
                log.exception("Unexpected exception in handler")
                msg_type, outcome = TMessageType.EXCEPTION, INTERNAL_ERROR
                result = TApplicationException(TApplicationException.INTERNAL_ERROR, "Internal error")
        out = TMemoryBuffer()
        oprot = protocol(out)
        oprot.writeMessageBegin(name, msg_type, seqid)
        result.write(oprot)
        oprot.writeMessageEnd()
        return bytes(out.getvalue()), outcome
