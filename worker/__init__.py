"""Celery worker: the pi task, the Leibniz kernel and the JSON state-file store."""
