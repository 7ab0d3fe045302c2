"""The task state store: one record per task, shared by the Thrift server and the workers, owned by
neither. Importing it builds no Celery app and opens no connection.

    records.py            TaskState, task ids, statuses
    errors.py             StateError, UnknownTask, StorageError
    interface.py          TaskStore (the worker's face), TaskCatalog (the Thrift server's)
    config.py             StateSettings
    files.py              the files backend: one JSON file per task, replaced atomically
    files_index.py        its listing index (SQLite), files_schema.py its SQL
    files_catalog.py      its TaskCatalog; files_housekeeping.py its upkeep
"""
