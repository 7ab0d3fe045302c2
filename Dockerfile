# One image for both containers: supervisord (Thrift server + Celery worker) and the gateway.

# Build stage: compiles the Leibniz kernel and thrift's fastbinary codec into wheels.
FROM python:3.11-slim AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The whole build context, filtered by .dockerignore (tests, bench, docs, caches, local state and
# secrets stay out): `pip wheel .` builds whatever pyproject.toml declares, with no list to keep here.
COPY . .
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

# Runtime stage: no compiler, no sources beyond the installed wheels, a non-root user.
FROM python:3.11-slim
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin pi \
 && mkdir -p /data/results /var/log/pi /run/pi \
 && chown pi:pi /data/results /var/log/pi /run/pi
COPY --from=build /wheels /wheels
# --no-index: exactly the wheels the build stage resolved, nothing fetched a second time.
RUN pip install --no-cache-dir --no-index /wheels/*.whl && rm -rf /wheels
WORKDIR /app
COPY supervisord.conf ./supervisord.conf
COPY docker/entrypoint.sh /usr/local/bin/entrypoint.sh

# The defaults of every setting (README.md, "Configuration"); docker-compose.yml overrides some.
# No secret here: SUPERVISOR_PASSWORD and the broker's password come from the environment.
ENV BROKER_URL=amqp://guest:guest@rabbitmq:5672// \
    CELERY_QUEUE=pi \
    STATE_DIR=/data/results \
    MAX_DECIMAL=10 \
    TSERVER_HOST=0.0.0.0 \
    TSERVER_PORT=9000 \
    API_HOST=0.0.0.0 \
    API_PORT=8000 \
    WORKER_CONCURRENCY=2 \
    SUPERVISOR_HOST=0.0.0.0 \
    SUPERVISOR_PORT=9001 \
    SUPERVISOR_USER=admin \
    LOG_DIR=/var/log/pi \
    RUN_DIR=/run/pi \
    PYTHONUNBUFFERED=1

USER pi
# No VOLUME line: it would give every container of this image an anonymous volume, the gateway's
# too, left behind at each `down`. docker-compose.yml mounts the named volume `results` on
# /data/results; a plain `docker run` keeps the state only as long as its container.
EXPOSE 8000 9000 9001
ENTRYPOINT ["/usr/local/bin/entrypoint.sh"]
CMD ["supervisord", "-c", "/app/supervisord.conf"]
