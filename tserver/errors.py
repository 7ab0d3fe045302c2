"""Every exception the Thrift server's own modules raise (the handler turns them into IDL exceptions).

TserverError
└── QueueUnavailable   the broker did not accept (confirm) the message in time: maybe queued
    ├── NotPublished   ... and nothing was sent at all: certainly not queued, safe to retry
    └── PublishOverdue ... the broker confirmed it, but later than the caller could wait
"""


class TserverError(Exception):
    """Base of the Thrift server's own errors."""


class QueueUnavailable(TserverError):
    """The broker could not be reached or did not confirm the message."""


class NotPublished(QueueUnavailable):
    """Nothing was written to the broker (no connection, publisher closed): certainly not queued."""


class PublishOverdue(QueueUnavailable):
    """The broker confirmed the message, but later than the caller could wait."""
