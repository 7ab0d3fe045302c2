# Sourced by scripts/test-containers.sh and containers/standins/build.sh: podman's settings for the
# container test stage, kept in a cache folder of their own (the machine's /etc/containers is left
# as it is) and exported through CONTAINERS_CONF / CONTAINERS_REGISTRIES_CONF.
#
# Why each setting (found on our 2-core Debian 12 CI machines):
#   default_ulimits = []  podman's default nofile/nproc limits exceed the machine's hard limits
#                         ("setrlimit RLIMIT_NOFILE: Operation not permitted");
#   runtime = "runc"      crun refuses a hybrid cgroup v1/v2 layout;
#   cgroupfs, file events there is no systemd to manage cgroups or receive journald events;
#   docker.io search      our files name images by short name (python:3.11-slim), as Docker does.

PI_CONTAINERS_CACHE=${PI_CONTAINERS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pi-trio-containers}
mkdir -p "$PI_CONTAINERS_CACHE"
export PI_CONTAINERS_CACHE

cat >"$PI_CONTAINERS_CACHE/containers.conf.new" <<'CONF'
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[network]
network_backend = "netavark"
CONF
mv -f "$PI_CONTAINERS_CACHE/containers.conf.new" "$PI_CONTAINERS_CACHE/containers.conf"

cat >"$PI_CONTAINERS_CACHE/registries.conf.new" <<'CONF'
unqualified-search-registries = ["docker.io"]
short-name-mode = "permissive"
CONF
mv -f "$PI_CONTAINERS_CACHE/registries.conf.new" "$PI_CONTAINERS_CACHE/registries.conf"

export CONTAINERS_CONF="$PI_CONTAINERS_CACHE/containers.conf"
export CONTAINERS_REGISTRIES_CONF="$PI_CONTAINERS_CACHE/registries.conf"
