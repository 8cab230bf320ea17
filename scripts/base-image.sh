#!/usr/bin/env bash
# Makes the base image the Dockerfile starts FROM when it is not present and no registry can be
# used: a minimal Debian trixie from debootstrap, imported under the same name the registry uses.
set -euo pipefail
image="${PGHA_BASE_IMAGE:-debian:trixie-slim}"
if docker image inspect "$image" >/dev/null 2>&1; then
  exit 0
fi
mirror="${PGHA_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
fi
mirror="${mirror:-http://deb.debian.org/debian}"
root=$(mktemp -d /var/tmp/pgha-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "==> debootstrap trixie from $mirror (about a minute)"
debootstrap --variant=minbase trixie "$root" "$mirror" >/var/tmp/pgha-debootstrap.log 2>&1 \
  || { tail -20 /var/tmp/pgha-debootstrap.log >&2; exit 1; }
tar -C "$root" -c . | docker import - "$image" >/dev/null
echo "==> imported $image"
