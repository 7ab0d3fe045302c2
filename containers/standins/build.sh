#!/usr/bin/env bash
# Makes sure the base images our Dockerfile and compose files name exist in podman's storage, under
# exactly those names: python:3.11-slim, rabbitmq:3.13-alpine and (docker-compose.scale.yml)
# redis:7-alpine.
#
# Why: CI machines reach Debian's packages and PyPI but no container registry. For each image:
#   1. a real image already here (no stand-in label) is used as it is;
#   2. otherwise a pull of the real image is tried (bounded by PI_CONTAINERS_PULL_TIMEOUT, 30 s);
#   3. otherwise a stand-in built from Debian packages (./python, ./rabbitmq, ./redis) is used,
#      rebuilt only when its definition changed: each image carries the hash of its definition as a
#      label.
# The stand-ins start from a minimal Debian root file system made by debootstrap from the machine's
# own apt mirror and imported with `podman import`.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../engine.sh
source "$here/../engine.sh"

LABEL=org.pi-trio.standin
PULL_TIMEOUT=${PI_CONTAINERS_PULL_TIMEOUT:-30}
CODENAME=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
BASE=localhost/pi-trio-standin-base:$CODENAME
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

log() { echo "standins: $*" >&2; }

# The Debian archives the machine's apt uses for $CODENAME, one "deb URI SUITE COMPONENTS" a line,
# read from both the one-line (.list) and the deb822 (.sources) formats.
debian_sources() {
  {
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
      [ -e "$f" ] && awk '$1 == "deb" && $2 !~ /^\[/' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
      [ -e "$f" ] || continue
      awk 'BEGIN { RS = ""; FS = "\n" }
        { t = u = s = c = ""; on = 1
          for (i = 1; i <= NF; i++) {
            if ($i ~ /^Types:/) t = substr($i, 7); else if ($i ~ /^URIs:/) u = substr($i, 6)
            else if ($i ~ /^Suites:/) s = substr($i, 8); else if ($i ~ /^Components:/) c = substr($i, 12)
            else if ($i ~ /^Enabled: *no/) on = 0 }
          if (on && t ~ /(^| )deb( |$)/) { split(u, us, " "); split(s, ss, " ")
            for (a in us) for (b in ss) print "deb", us[a], ss[b], c } }' "$f"
    done
  } | awk -v c="$CODENAME" '$3 == c || index($3, c "-") == 1 || index($3, c "/") == 1' | sed 's/  */ /g' | sort -u
}

# sha256 of the files given, of the codename and of extra strings: the definition of one image.
definition_hash() { { echo "$CODENAME"; cat "$@"; } | sha256sum | cut -c1-16; }

label_of() { podman image inspect --format "{{ index .Labels \"$LABEL\" }}" "$1" 2>/dev/null || echo missing; }

make_base() {
  local hash=$1 mirror root
  [ "$(label_of "$BASE")" = "$hash" ] && { log "$BASE is up to date"; return; }
  command -v debootstrap >/dev/null || { log "debootstrap is missing (apt-get install debootstrap)"; exit 1; }
  mirror=$(debian_sources | awk -v c="$CODENAME" '$3 == c { print $2; exit }')
  mirror=${mirror:-http://deb.debian.org/debian}
  root=$(mktemp -d "$PI_CONTAINERS_CACHE/rootfs.XXXXXX")
  trap 'rm -rf "$root"' RETURN
  mkdir -p "$PI_CONTAINERS_CACHE/debs"
  log "debootstrap $CODENAME from $mirror (a minute or two on a fresh machine)"
  debootstrap --variant=minbase --include=ca-certificates --cache-dir="$PI_CONTAINERS_CACHE/debs" \
    "$CODENAME" "$root" "$mirror" >"$PI_CONTAINERS_CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$PI_CONTAINERS_CACHE/debootstrap.log" >&2; exit 1; }
  debian_sources >"$root/etc/apt/sources.list"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/*.log
  tar -C "$root" -c . | podman import -q --change "LABEL $LABEL=$hash" --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  log "imported $BASE"
}

# state NAME HASH: "real" (a real image is here or was just pulled), "current" (the stand-in is up to
# date) or "build".
state() {
  local label
  label=$(label_of "$1")
  if [ "$label" != missing ] && [ -z "$label" ]; then echo real; return; fi
  if timeout "$PULL_TIMEOUT" podman pull -q "$1" >/dev/null 2>&1; then echo real; return; fi
  if [ "$label" = "$2" ]; then echo current; else echo build; fi
}

# build_standin NAME DIR HASH [EXTRA FILE]: the stand-in for NAME from the definition in DIR.
build_standin() {
  local name=$1 dir=$2 hash=$3 extra=${4:-} ctx
  ctx=$(mktemp -d "$PI_CONTAINERS_CACHE/ctx.XXXXXX")
  cp -r "$dir"/. "$ctx"/
  [ -z "$extra" ] || cp "$extra" "$ctx"/
  if ! podman build --pull=never --label "$LABEL=$hash" --build-arg "BASE=$BASE" -t "$name" "$ctx" \
      >"$PI_CONTAINERS_CACHE/build-$(basename "$dir").log" 2>&1; then
    tail -30 "$PI_CONTAINERS_CACHE/build-$(basename "$dir").log" >&2
    rm -rf "$ctx"; log "$name: the stand-in did not build"; return 1
  fi
  rm -rf "$ctx"
  log "$name: built the stand-in"
}

[ "$(id -u)" = 0 ] || { log "run as root: debootstrap and the image imports need it"; exit 1; }
# The images, one a line: the name our files use, the stand-in's folder, a file its definition also
# copies (the python stand-in carries the machine's CA bundle).
IMAGES="docker.io/library/python:3.11-slim python $CA_BUNDLE
docker.io/library/rabbitmq:3.13-alpine rabbitmq
docker.io/library/redis:7-alpine redis"
base_hash=$(definition_hash "$here/build.sh")
keep=" $base_hash "
to_build=()
while read -r name dir extra; do
  hash=$(definition_hash "$here/build.sh" "$here/$dir"/* ${extra:+"$extra"})
  st=$(state "$name" "$hash" </dev/null)
  log "$name: $st"
  [ "$st" = real ] || keep+="$hash "
  [ "$st" != build ] || to_build+=("$name $dir $hash $extra")
done <<<"$IMAGES"

status=0
if ((${#to_build[@]})); then
  make_base "$base_hash"
  # The stand-ins build side by side (about one core each, mostly waiting on apt).
  pids=()
  for job in "${to_build[@]}"; do
    read -r name dir hash extra <<<"$job"
    build_standin "$name" "$here/$dir" "$hash" "$extra" & pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || status=1; done
fi
# Images left without a name that were built on a stand-in no longer in use (replaced by a newer
# definition or by a pulled real image): remove them. Found by the label, which images built FROM a
# stand-in inherit; those of the stand-ins in use are kept (our image's build stage is a cache).
# Refused, harmlessly, while something still uses one; a later run removes it.
for id in $(podman images -q --filter "label=$LABEL" --filter dangling=true); do
  case "$keep" in *" $(label_of "$id") "*) ;; *) podman rmi "$id" >/dev/null 2>&1 || true ;; esac
done
exit "$status"
