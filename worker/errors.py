"""Every exception the worker package raises.

    WorkerError
    ├── UnknownTask        the id is malformed or names no task in the state folder
    ├── StorageError       the state folder cannot be written (permissions, disk full)
    └── QueueUnavailable   the broker did not accept (confirm) the message in time
        └── NotPublished   ... and nothing was sent at all: certainly not queued, safe to retry
"""


class WorkerError(Exception):
    """Base of the worker package's errors."""


class UnknownTask(WorkerError):
    """The id is malformed or names no task."""


class StorageError(WorkerError):
    """A state file could not be written."""


class QueueUnavailable(WorkerError):
    """The broker could not be reached or did not confirm the message."""


class NotPublished(QueueUnavailable):
    """Nothing was written to the broker (no connection, publisher closed): certainly not queued."""
