"""The Celery app, and nothing else: `celery -A worker.app worker` starts a worker from it."""

from __future__ import annotations

from celery import Celery

from state.config import StateSettings, load
from worker.config import WorkerSettings

settings = load(WorkerSettings)
state_settings = load(StateSettings)

_PUBLISH_TIMEOUT = 1.5  # seconds

app = Celery("worker", broker=settings.BROKER_URL, include=["worker.tasks"])
app.conf.update(
    task_default_queue=settings.CELERY_QUEUE,
    task_default_queue_type=settings.CELERY_QUEUE_TYPE,
    task_serializer="json",
    accept_content=["json"],
    # Progress and results live in the state files; Celery's own result backend is not used.
    task_ignore_result=True,
    # Survive a killed worker: acknowledge only after the task ran, requeue when the worker dies,
    # and take one message at a time so a dying worker holds no unstarted ones. (By default Celery
    # acknowledges a message as it starts the task: a worker killed mid-task lost it for good.)
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    worker_cancel_long_running_tasks_on_connection_loss=True,
    # A publish the broker did not confirm is not reported as accepted.
    broker_transport_options={"confirm_publish": True},
    # The worker publishes only when a task retries itself: a broker that is gone must not hold it.
    broker_connection_timeout=_PUBLISH_TIMEOUT,
    broker_connection_retry_on_startup=True,
    broker_heartbeat=10,
    task_publish_retry_policy={
        "max_retries": 1,
        "interval_start": 0,
        "interval_step": 0.2,
        "interval_max": 0.5,
    },
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
)
