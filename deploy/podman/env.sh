#!/usr/bin/env bash
# Writes a containers.conf and storage.conf for podman on a machine without a
# Docker engine or systemd, and prints the `export` lines that select them:
#
#   eval "$(deploy/podman/env.sh /var/tmp/deq-podman)"
#
# Settings found necessary on the Debian 12 (podman 4.3) machines this project
# is tested on:
# - runtime runc: the default crun refuses this kernel's mixed cgroup v1/v2
#   layout ("cgroups in hybrid mode not supported");
# - cgroup_manager cgroupfs, events to a file: there is no systemd/journald;
# - default_ulimits within the machine's hard limits, or `podman run` fails
#   with "error setting rlimit";
# - overlay storage under DIR, so a test owns (and can delete) all of it.
set -euo pipefail
dir=${1:?usage: env.sh DIR}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

hard_nofile=$(ulimit -Hn)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
nofile=$(( hard_nofile < 65536 ? hard_nofile : 65536 ))
hard_nproc=$(ulimit -Hu)
[ "$hard_nproc" = unlimited ] && hard_nproc=32768
nproc=$(( hard_nproc < 32768 ? hard_nproc : 32768 ))

cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=${nofile}:${nofile}", "nproc=${nproc}:${nproc}"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "${dir}/events.log"

[network]
# No iptables here, so no bridge networks: builds and containers use
# --network=host (the tests bind the server to 127.0.0.1).
network_backend = "netavark"
network_config_dir = "${dir}/networks"
CONF

cat >"$dir/storage.conf" <<CONF
[storage]
driver = "overlay"
runroot = "${dir}/run"
graphroot = "${dir}/graph"
CONF

printf 'export CONTAINERS_CONF=%q\nexport CONTAINERS_STORAGE_CONF=%q\n' "$dir/containers.conf" "$dir/storage.conf"
