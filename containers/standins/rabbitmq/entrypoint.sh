#!/bin/sh
# The stand-in rabbitmq image's entrypoint: turns RABBITMQ_DEFAULT_USER / RABBITMQ_DEFAULT_PASS into
# the broker's configuration (as the official image does), logs to the console (so `logs` shows the
# broker), makes the data folder the broker's own (a fresh named volume), then drops root.
set -eu
if [ "${1:-}" = rabbitmq-server ] && [ "$(id -u)" = 0 ]; then
  {
    echo "loopback_users.guest = false"
    echo "listeners.tcp.default = 5672"
    echo "log.console = true"
    echo "log.console.level = info"
    echo "log.file = false"
    [ -z "${RABBITMQ_DEFAULT_USER:-}" ] || echo "default_user = $RABBITMQ_DEFAULT_USER"
    [ -z "${RABBITMQ_DEFAULT_PASS:-}" ] || echo "default_pass = $RABBITMQ_DEFAULT_PASS"
  } >/etc/rabbitmq/rabbitmq.conf
  chown rabbitmq:rabbitmq /etc/rabbitmq/rabbitmq.conf
  chmod 600 /etc/rabbitmq/rabbitmq.conf
  chown -R rabbitmq:rabbitmq /var/lib/rabbitmq
  cd /var/lib/rabbitmq
  # Debian's /usr/sbin/rabbitmq-server sends the broker's output to a file: run the real one.
  shift
  exec setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups /usr/lib/rabbitmq/bin/rabbitmq-server "$@"
fi
exec "$@"
