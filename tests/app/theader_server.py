"""A minimal THeader Thrift server for the gateway's tests: thrift's own THeaderProtocol (which answers a
THeader request in THeader) and the generated Processor, one thread per connection, on 127.0.0.1:0.

It keeps the info headers of every request it read, so that a test can see what the gateway's client
sent (the trace context). It stands in for the real Thrift server until that one speaks THeader.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import uuid

from thrift.protocol.THeaderProtocol import THeaderProtocol
from thrift.transport.THeaderTransport import THeaderClientType
from thrift.transport.TSocket import TSocket
from thrift.transport.TTransport import TTransportException

from RPC import RPCcelery
from RPC.ttypes import BadTask, TaskFinished, calcResult

ENDED = "5b2f3c1e-8a4d-4f7e-9c0b-2d1e3f4a5b6c"
RUNNING = "6c3f4d2e-9b5e-4a8f-8d1c-3e2f4a5b6c7d"


def record(task_id: str, status: str, decimal: int = 2) -> calcResult:
    done = status == "SUCCESS"
    return calcResult(
        id=task_id,
        status=status,
        pushqtime="2024-01-01T00:00:00Z",
        decimal=decimal,
        progress=100.0 if done else 0.0,
        result=3.14 if done else None,
        digits="3.14" if done else None,
        terms=400 if done else None,
    )


class Handler(RPCcelery.Iface):
    """ENDED is SUCCESS, RUNNING is WAITING (cancellable once); any other id is unknown (BadTask)."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.cancelled: set[str] = set()

    def getTaskStatus(self, uuid_):
        self.calls.append("getTaskStatus")
        if uuid_ == ENDED:
            return record(ENDED, "SUCCESS")
        if uuid_ == RUNNING:
            return record(RUNNING, "REVOKED" if RUNNING in self.cancelled else "WAITING")
        raise BadTask(message=f"no task with id {uuid_}")

    def queueCalcPi(self, decimal):
        self.calls.append("queueCalcPi")
        return record(str(uuid.uuid4()), "WAITING", decimal)

    def cancelTask(self, uuid_):
        self.calls.append("cancelTask")
        if uuid_ != RUNNING:
            raise BadTask(message=f"no task with id {uuid_}")
        if RUNNING in self.cancelled:
            raise TaskFinished(message="the task has already ended", status="REVOKED")
        self.cancelled.add(RUNNING)
        return record(RUNNING, "REVOKED")


class _Recording(THeaderProtocol):
    """Keeps each request's info headers and format as soon as its message begins (before the reply goes out)."""

    def __init__(self, trans: TSocket, server: THeaderServer) -> None:
        super().__init__(trans, (THeaderClientType.HEADERS, THeaderClientType.FRAMED_BINARY))
        self.server = server

    def readMessageBegin(self):
        begin = super().readMessageBegin()
        self.server.headers.append(dict(self.get_headers()))
        self.server.client_types.append(self.trans._client_type)
        return begin


class THeaderServer:
    """Serves `handler` over THeader (binary inside) until closed; `headers`: each request's info headers."""

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler if handler is not None else Handler()
        self.processor = RPCcelery.Processor(self.handler)
        self.headers: list[dict[bytes, bytes]] = []
        self.client_types: list[int] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._accept, name="theader-server", daemon=True)

    def start(self) -> THeaderServer:
        self._thread.start()
        return self

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept() (close() alone does not, on Linux).
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(5)
        assert not self._thread.is_alive(), "the THeader server did not stop"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        trans = TSocket()
        trans.handle = conn
        # The same protocol object reads the request and writes the reply, so that the reply is in the
        # request's format (as thrift's TServer does for THeader).
        prot = _Recording(trans, self)
        try:
            while True:
                self.processor.process(prot, prot)
        except (TTransportException, OSError):
            pass
        finally:
            conn.close()
