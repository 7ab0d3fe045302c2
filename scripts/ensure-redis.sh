#!/usr/bin/env bash
# Makes sure Redis answers at $REDIS_URL (a PING, not just an open port). Nothing answers and
# redis-server is installed: start it (in-memory, loopback only). With --install (CI), install it
# with apt-get first where it is missing. Otherwise say in one line how to get one, and fail.
set -euo pipefail
PY=${PY:-.venv/bin/python}
REDIS_URL=${TEST_REDIS_URL:-${REDIS_URL:-redis://127.0.0.1:6379/0}}

answers() {
  "$PY" - "$REDIS_URL" <<'PYEOF'
import sys
import redis
try:
    redis.Redis.from_url(sys.argv[1], socket_connect_timeout=2, socket_timeout=2).ping()
except Exception:
    sys.exit(1)
PYEOF
}

answers && exit 0
if ! command -v redis-server >/dev/null 2>&1; then
  if [[ "${1:-}" == "--install" ]] && command -v apt-get >/dev/null 2>&1; then
    echo "ensure-redis: installing redis-server with apt-get" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "ensure-redis: nothing answers at $REDIS_URL; install Redis (sudo apt-get install redis-server) or set TEST_REDIS_URL" >&2
    exit 1
  fi
fi
port=$("$PY" -c 'import sys; from redis.connection import parse_url; print(parse_url(sys.argv[1]).get("port", 6379))' "$REDIS_URL")
echo "ensure-redis: starting redis-server on 127.0.0.1:$port" >&2
redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --save "" --appendonly no >/dev/null
for _ in $(seq 1 30); do
  answers && { echo "ensure-redis: Redis answers at $REDIS_URL" >&2; exit 0; }
  sleep 1
done
echo "ensure-redis: Redis did not answer at $REDIS_URL within 30 s" >&2
exit 1
