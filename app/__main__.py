"""`python -m app` starts the gateway: one uvicorn process (see README: the --workers latency trap)."""

import logging

import uvicorn

from app.config import load_settings
from app.main import create_app

settings = load_settings()
logging.basicConfig(level=logging.INFO, format="%(asctime)s gateway %(levelname)s %(name)s: %(message)s")
uvicorn.run(
    create_app(settings),
    host=settings.API_HOST,
    port=settings.API_PORT,
    log_config=None,
    access_log=False,
    timeout_graceful_shutdown=5,
)
