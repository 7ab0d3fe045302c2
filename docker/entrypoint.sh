#!/bin/sh
# Refuses to start supervisord with an empty or well-known password: its web UI can stop and
# restart the services. Then runs the given command.
set -eu
if [ "${1:-}" = "supervisord" ]; then
  case "${SUPERVISOR_PASSWORD:-}" in
    ""|admin|password|changeme|change-me|secret|supervisor)
      echo "entrypoint: refusing to start: set SUPERVISOR_PASSWORD to a secret of your own" >&2
      exit 64 ;;
  esac
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$STATE_DIR"
  touch "$LOG_DIR/tserver.log" "$LOG_DIR/worker.log"
fi
exec "$@"
