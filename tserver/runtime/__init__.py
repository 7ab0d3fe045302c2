"""The asyncio Thrift server the service runs on; nothing in it knows the service.

process.py     run(): a process serving until SIGTERM (uvloop, signals, port file)
server.py      ThriftServer: listening, connections, graceful close
connection.py  Connection: one client's calls, in order, with flow control and timeouts
framing.py     Framing: unframed, framed and THeader messages on one port
theader.py     THeader frames read and written with thrift's own THeaderTransport, within limits
scanner.py     MessageScanner: where an unframed message ends, within limits
request.py     Request: one message, its THeader info headers, how its reply is framed
dispatch.py    Dispatcher: a coroutine handler method on the loop, a plain one in the pool
observer.py    CallObserver: what whoever watches the calls (metrics, traces) is told
limits.py      ServerLimits
"""

from tserver.runtime.limits import ServerLimits
from tserver.runtime.process import run
from tserver.runtime.server import ThriftServer

__all__ = ["ServerLimits", "ThriftServer", "run"]
