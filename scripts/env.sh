# Defaults for every setting, in one place for the native run (the Dockerfile repeats them as ENV).
# Sourced by scripts/run.sh; any variable already set in the environment wins.
: "${BROKER_URL:=amqp://guest:guest@localhost:5672//}"
: "${CELERY_QUEUE:=pi}"
: "${STATE_DIR:=$PWD/results}"
: "${MAX_DECIMAL:=10}"
: "${TSERVER_HOST:=127.0.0.1}"
: "${TSERVER_PORT:=9000}"
: "${API_HOST:=127.0.0.1}"
: "${API_PORT:=8000}"
: "${WORKER_CONCURRENCY:=2}"
: "${SUPERVISOR_HOST:=127.0.0.1}"
: "${SUPERVISOR_PORT:=9001}"
: "${SUPERVISOR_USER:=admin}"
: "${LOG_DIR:=$PWD/run/logs}"
: "${RUN_DIR:=$PWD/run}"
# What the worker lets be seen (docs/observability.md, "Worker"): its metrics listener, log format,
# Flower's task events. Tracing stays off unless OTEL_TRACES_EXPORTER is set (otlp or console).
: "${METRICS_ENABLED:=true}"
: "${WORKER_METRICS_HOST:=127.0.0.1}"
: "${WORKER_METRICS_PORT:=9101}"
: "${LOG_FORMAT:=text}"
: "${CELERY_EVENTS:=false}"
export BROKER_URL CELERY_QUEUE STATE_DIR MAX_DECIMAL TSERVER_HOST TSERVER_PORT API_HOST API_PORT \
  WORKER_CONCURRENCY SUPERVISOR_HOST SUPERVISOR_PORT SUPERVISOR_USER LOG_DIR RUN_DIR \
  METRICS_ENABLED WORKER_METRICS_HOST WORKER_METRICS_PORT LOG_FORMAT CELERY_EVENTS
