"""The Celery app, and nothing else: `celery -A worker.app worker` starts a worker from it."""

from __future__ import annotations

from celery import Celery
from kombu import Exchange, Queue

from state.config import StateSettings, load
from worker.config import WorkerSettings

settings = load(WorkerSettings)
state_settings = load(StateSettings)

_PUBLISH_TIMEOUT = 1.5  # seconds
#: The chunks of split calculations have a queue (and workers) of their own.
CHUNK_QUEUE = f"{settings.CELERY_QUEUE}.chunks"


def _queue(name: str) -> Queue:
    arguments = {"x-queue-type": "quorum"} if settings.CELERY_QUEUE_TYPE == "quorum" else None
    return Queue(name, Exchange(name), routing_key=name, queue_arguments=arguments)


def _result_backend() -> str:
    """Where the chunks' results wait for their chord (a chord needs a result backend; rpc:// cannot
    run one): Redis when the state is there (its chord counts in natively), else SQLite beside the
    state files (Celery then polls it with chord_unlock)."""
    if settings.CELERY_RESULT_BACKEND:
        return settings.CELERY_RESULT_BACKEND
    if state_settings.STATE_BACKEND == "redis":
        return state_settings.REDIS_URL
    return f"db+sqlite:///{state_settings.STATE_DIR}/.chords.sqlite"


# The worker imports these at its start; the last three connect to Celery's signals what lets it be seen
# while it runs (docs/observability.md, "Worker").
app = Celery(
    "worker",
    broker=settings.BROKER_URL,
    backend=_result_backend(),
    include=["worker.tasks", "worker.chunks", "worker.logs", "worker.metrics_files", "worker.tracing"],
)
app.conf.update(
    task_default_queue=settings.CELERY_QUEUE,
    task_default_queue_type=settings.CELERY_QUEUE_TYPE,
    task_queues=[_queue(settings.CELERY_QUEUE), _queue(CHUNK_QUEUE)],
    task_serializer="json",
    accept_content=["json"],
    result_serializer="json",
    # Progress and results live in the state store; only chunks keep a result (for their chord),
    # for a day at most: long after any chord has combined them.
    task_ignore_result=True,
    result_expires=24 * 3600,
    # chord_unlock (result backends other than Redis) looks at the chunks this often, unless the chord
    # says otherwise (a split calculation's does: worker.chunks.poll_interval).
    result_chord_retry_interval=0.5,
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
    # Celery configures the root logger; worker/logs.py then gives its handlers our format.
    worker_hijack_root_logger=True,
    worker_redirect_stdouts=False,
    # The events Flower (and celery events) watch: task-received/started/succeeded/failed/revoked from the
    # worker, task-sent for the messages it publishes (chunks). Off by default: one more message per step.
    worker_send_task_events=settings.CELERY_EVENTS,
    task_send_sent_event=settings.CELERY_EVENTS,
)
