#!/bin/sh
# Refuses to start supervisord with an empty or well-known password: its web UI can stop and
# restart the services. Then runs the given command.
set -eu
if [ "${1:-}" = "supervisord" ]; then
  why=""
  case "${SUPERVISOR_PASSWORD:-}" in
    "") why="SUPERVISOR_PASSWORD is empty" ;;
    admin|password|changeme|change-me|secret|supervisor) why="SUPERVISOR_PASSWORD is a well-known password" ;;
  esac
  if [ -n "$why" ]; then
    echo "entrypoint: refusing to start: $why, and supervisord's web UI (port ${SUPERVISOR_PORT:-9001}) can" \
      "stop and restart the services; set SUPERVISOR_PASSWORD to a secret of your own" >&2
    exit 64
  fi
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$STATE_DIR"
  touch "$LOG_DIR/tserver.log" "$LOG_DIR/worker.log" "$LOG_DIR/chunks.log"
fi
exec "$@"
