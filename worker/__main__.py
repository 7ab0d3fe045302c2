"""`python -m worker`: a worker host's one command. Runs the stock Celery worker with our settings
(BROKER_URL, CELERY_QUEUE, WORKER_CONCURRENCY, the state store's), the same as supervisord does.

Extra arguments go to `celery worker` as they are, e.g. `python -m worker --loglevel=DEBUG`.
"""

from __future__ import annotations

import os
import socket
import sys

from worker.app import CHUNK_QUEUE, app, settings


def main(argv: list[str]) -> None:
    """Run `celery worker` for our queue until it is stopped (TERM: a warm shutdown)."""
    concurrency = settings.WORKER_CONCURRENCY or os.cpu_count() or 1
    app.worker_main(
        [
            # Both queues: a worker host takes whole calculations and the chunks of split ones.
            "worker",
            f"--queues={settings.CELERY_QUEUE},{CHUNK_QUEUE}",
            f"--concurrency={concurrency}",
            "--loglevel=INFO",
            f"--hostname=pi-{settings.CELERY_QUEUE}@{socket.gethostname()}",
            "--without-gossip",
            "--without-mingle",
            *argv,
        ]
    )


if __name__ == "__main__":
    main(sys.argv[1:])
