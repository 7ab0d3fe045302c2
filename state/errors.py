"""Every exception the state store raises.

StateError
├── UnknownTask    the id is malformed or names no task
└── StorageError   the store cannot be used right now (folder unwritable or full, Redis gone)
"""


class StateError(Exception):
    """Base of the state store's errors."""


class UnknownTask(StateError):
    """The id is malformed or names no task."""


class StorageError(StateError):
    """The store could not be read or written."""
