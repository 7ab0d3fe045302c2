"""Errors of the gateway.

    GatewayError
    ├── ComputeUnavailable     the Thrift server cannot be reached or did not answer in time (503)
    │   ├── ComputeUnreachable ... no connection could be opened: the call was certainly not sent
    │   ├── ComputeDropped     ... the connection broke during the call: it may have been received
    │   └── ComputeTimeout     ... no answer within THRIFT_TIMEOUT
    └── ComputeFailed          the Thrift server answered with an internal error (502)

The IDL's exceptions (RPC.ttypes.BadDecimal, BadTask, BadArgument, Unavailable) arrive typed from the
Thrift client; app/main.py turns each into an HTTP status with a `detail` message.
"""


class GatewayError(Exception):
    """Base of the gateway's own errors."""


class ComputeUnavailable(GatewayError):
    """The Thrift server cannot be reached or did not answer in time."""


class ComputeUnreachable(ComputeUnavailable):
    """No connection to the Thrift server could be opened: nothing was sent, any call may be repeated."""


class ComputeDropped(ComputeUnavailable):
    """The connection to the Thrift server broke during a call (it may have been received)."""


class ComputeTimeout(ComputeUnavailable):
    """The Thrift server did not answer within THRIFT_TIMEOUT (told apart for the metrics' outcome `timeout`)."""


class ComputeFailed(GatewayError):
    """The Thrift server answered a call with an internal error instead of a result."""
