"""`python -m app` starts the gateway: one uvicorn process (see README: the --workers latency trap)."""

import uvicorn

from app.config import load_settings
from app.logs import configure
from app.main import create_app

settings = load_settings()
# Before uvicorn starts: its loggers keep no handlers of their own and log through this one.
configure(settings.LOG_FORMAT, level=settings.LOG_LEVEL)
uvicorn.run(
    create_app(settings),
    host=settings.API_HOST,
    port=settings.API_PORT,
    log_config=None,
    access_log=False,
    timeout_graceful_shutdown=5,
)
