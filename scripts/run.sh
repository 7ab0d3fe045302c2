#!/usr/bin/env bash
# `make run`: the whole product in the foreground, natively. supervisord (with the real
# supervisord.conf) runs the Thrift server and the Celery worker; the gateway runs beside it.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
# shellcheck source=scripts/env.sh
source scripts/env.sh
mkdir -p "$LOG_DIR" "$RUN_DIR" "$STATE_DIR"

if [[ -z "${SUPERVISOR_PASSWORD:-}" ]]; then
  secret="$RUN_DIR/supervisor-password"
  [[ -s "$secret" ]] || (umask 077 && python -c 'import secrets; print(secrets.token_urlsafe(18))' > "$secret")
  SUPERVISOR_PASSWORD=$(<"$secret")
fi
export SUPERVISOR_PASSWORD

PY=python bash scripts/ensure-rabbitmq.sh

supervisord -c supervisord.conf &
sup=$!
python -m app &
api=$!
stop() { trap - INT TERM EXIT; kill -TERM "$api" "$sup" 2>/dev/null || true; wait "$api" "$sup" 2>/dev/null || true; }
trap stop INT TERM EXIT

cat <<INFO
  gateway        http://$API_HOST:$API_PORT/   (Swagger UI: /docs)
  supervisord    http://$SUPERVISOR_HOST:$SUPERVISOR_PORT/   user $SUPERVISOR_USER, password $SUPERVISOR_PASSWORD
  state files    $STATE_DIR      logs  $LOG_DIR
  Ctrl-C stops everything.
INFO
# If either half dies, stop the other and report.
wait -n "$sup" "$api" || true
echo "run: a process exited; stopping the rest" >&2
