#!/usr/bin/env bash
# Makes sure RabbitMQ answers at $BROKER_URL (an AMQP handshake, not just an open port).
# Nothing answers and rabbitmq-server is installed: start it. With --install (CI), install it with
# apt-get first where it is missing. Otherwise say in one line how to get one, and fail.
set -euo pipefail
PY=${PY:-.venv/bin/python}
BROKER_URL=${BROKER_URL:-amqp://guest:guest@localhost:5672//}

answers() {
  "$PY" - "$BROKER_URL" <<'PYEOF'
import sys
from kombu import Connection
try:
    with Connection(sys.argv[1], connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=0, timeout=2)
except Exception:
    sys.exit(1)
PYEOF
}

answers && exit 0
if ! command -v rabbitmq-server >/dev/null 2>&1; then
  if [[ "${1:-}" == "--install" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-rabbitmq: installing rabbitmq-server with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rabbitmq-server >/dev/null
  else
    echo "ensure-rabbitmq: nothing answers at $BROKER_URL; install RabbitMQ (sudo apt-get install rabbitmq-server) or set BROKER_URL" >&2
    exit 1
  fi
fi
echo "ensure-rabbitmq: starting rabbitmq-server -detached" >&2
rabbitmq-server -detached >/dev/null 2>&1 || true
for _ in $(seq 1 60); do
  answers && { echo "ensure-rabbitmq: RabbitMQ answers at $BROKER_URL" >&2; exit 0; }
  sleep 1
done
echo "ensure-rabbitmq: RabbitMQ did not answer at $BROKER_URL within 60 s; see /var/log/rabbitmq" >&2
exit 1
