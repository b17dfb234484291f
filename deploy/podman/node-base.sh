#!/usr/bin/env bash
# Makes a Node 20 base image locally, for machines that reach Debian's archive
# but no image registry, and tags it as the Dockerfile's NODE_IMAGE default:
#
#   eval "$(deploy/podman/env.sh /var/tmp/deq-podman)"
#   deploy/podman/node-base.sh                 # → docker.io/library/node:20-bookworm-slim
#   podman build --pull=never --network=host -t deq-serve .
#
# The base is a `debootstrap --variant=minbase` Debian 12 root filesystem
# (cached as a tarball under $DEQ_BASE_CACHE, default /var/tmp/deq-serve-base,
# so only the first run pays the ~30 s download) plus this machine's own
# node and npm, laid out as in the official image (/usr/local/bin, /usr/local/lib/
# node_modules/npm), and this machine's CA bundle: npm inside the build then
# trusts the same certificates the host does (without it, npm ci fails with
# SELF_SIGNED_CERT_IN_CHAIN where a TLS-inspecting proxy sits in between).
set -euo pipefail
tag=${1:-docker.io/library/node:20-bookworm-slim}
cache=${DEQ_BASE_CACHE:-/var/tmp/deq-serve-base}
mirror=${DEQ_DEBIAN_MIRROR:-http://deb.debian.org/debian}
rootfs_tar="$cache/bookworm-minbase.tar"

node_bin=$(command -v node)
node_major=$("$node_bin" -p 'process.versions.node.split(".")[0]')
[ "$node_major" = 20 ] || { echo "node-base.sh: host node is v$node_major, the image wants 20" >&2; exit 1; }
npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
ca_bundle=/etc/ssl/certs/ca-certificates.crt
[ -f "$ca_bundle" ] || { echo "node-base.sh: no $ca_bundle (apt-get install ca-certificates)" >&2; exit 1; }

if [ ! -f "$rootfs_tar" ]; then
  mkdir -p "$cache"
  work=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  echo "node-base.sh: debootstrap --variant=minbase bookworm (cached at $rootfs_tar afterwards)" >&2
  debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  # apt lists and the package cache are not part of a base image.
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" --numeric-owner -cf "$rootfs_tar.tmp" .
  mv "$rootfs_tar.tmp" "$rootfs_tar"
  rm -rf "$work"
  trap - EXIT
fi

podman import --quiet "$rootfs_tar" localhost/deq-serve-bookworm-minbase:latest >/dev/null

ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp "$node_bin" "$ctx/node"
cp -r "$npm_dir" "$ctx/npm"
cp "$ca_bundle" "$ctx/ca-certificates.crt"
cat >"$ctx/Containerfile" <<'CF'
FROM localhost/deq-serve-bookworm-minbase:latest
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
ENV NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt
CMD ["node"]
CF
podman build --quiet --pull=never --network=host -t "$tag" -f "$ctx/Containerfile" "$ctx" >/dev/null
echo "$tag"
