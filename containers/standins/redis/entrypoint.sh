#!/bin/sh
# The stand-in redis image's entrypoint, doing what the official one does: options alone (or a
# .conf file) mean `redis-server` with them; as root it makes /data the server's own and runs itself
# again as `redis`; files are created private to that user (umask 0077).
# The official image builds Redis with protected mode off (a container is reached from other
# containers, and the password or the network is the protection): Debian's build has it on, so it
# is turned off here unless a configuration file or the command line says otherwise.
set -eu
[ $# -gt 0 ] || set -- redis-server
if [ "${1#-}" != "$1" ] || [ "${1%.conf}" != "$1" ]; then
  set -- redis-server "$@"
fi
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$1" = redis-server ] && { [ $# -eq 1 ] || [ "${2#-}" != "$2" ]; }; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
[ "$(umask)" != 0022 ] || umask 0077
exec "$@"
