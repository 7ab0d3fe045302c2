#!/usr/bin/env bash
# The container test stage (`make test-containers`): installs what it needs where missing (podman,
# runc, netavark, aardvark-dns, podman-compose), makes sure the base images our files name exist
# (the real ones where they can be pulled, Debian stand-ins otherwise: containers/standins/), then
# runs tests/containers, which builds our image and brings up each compose file set in turn
# (docker-compose.yml; then with docker-compose.scale.yml and `--scale worker=2`), checking it through
# the published ports and engine commands. Whatever the tests' projects made is removed, also when
# they fail or are killed. Prints the measured figures and the stage's duration at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
started=$(date +%s)
PY=${PY:-.venv/bin/python}
PODMAN_COMPOSE_VERSION=1.6.0

log() { echo "test-containers: $*" >&2; }

# 1. The engine, from Debian's packages (as root; elsewhere say what is missing).
missing=()
command -v podman >/dev/null 2>&1 || missing+=(podman)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /usr/lib/podman/netavark ] || command -v netavark >/dev/null 2>&1 || missing+=(netavark)
[ -x /usr/lib/podman/aardvark-dns ] || command -v aardvark-dns >/dev/null 2>&1 || missing+=(aardvark-dns)
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if ((${#missing[@]})); then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    log "missing ${missing[*]}: install them (Debian 12: apt-get install ${missing[*]}) and run again"; exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; }
fi
"$PY" -c 'import podman_compose' 2>/dev/null \
  || "$PY" -m pip install -q "podman-compose==$PODMAN_COMPOSE_VERSION"
log "engine ready after $(( $(date +%s) - started )) s"

# 2. podman's settings (a private containers.conf) and the base images.
# shellcheck source=../containers/engine.sh
source containers/engine.sh
bash containers/standins/build.sh
log "base images ready after $(( $(date +%s) - started )) s"

# 3. The tests. Their projects are named after this prefix, so that whatever a killed run left
#    behind is found and removed here.
export PI_CONTAINERS_PROJECT_PREFIX="pitest$$"
export PI_CONTAINERS_REPORT="${PI_CONTAINERS_REPORT:-$PWD/run/test-containers.txt}"
rm -f "$PI_CONTAINERS_REPORT"
cleanup() {
  local ids
  ids=$(podman ps -aq --filter "name=^$PI_CONTAINERS_PROJECT_PREFIX" 2>/dev/null || true)
  [ -z "$ids" ] || podman rm -f -v --depend $ids >/dev/null 2>&1 || true
  for kind in volume network; do
    ids=$(podman "$kind" ls -q --filter "name=^$PI_CONTAINERS_PROJECT_PREFIX" 2>/dev/null || true)
    [ -z "$ids" ] || podman "$kind" rm -f $ids >/dev/null 2>&1 || true
  done
  ids=$(podman pod ps -q --filter "name=^pod_$PI_CONTAINERS_PROJECT_PREFIX" 2>/dev/null || true)
  [ -z "$ids" ] || podman pod rm -f $ids >/dev/null 2>&1 || true
}
trap cleanup EXIT
status=0
"$PY" -m pytest tests/containers "$@" || status=$?

echo
[ ! -s "$PI_CONTAINERS_REPORT" ] || sed 's/^/test-containers: /' "$PI_CONTAINERS_REPORT"
echo "test-containers: the stage took $(( $(date +%s) - started )) s"
exit "$status"
