#!/usr/bin/env bash
# Prepares this machine for pgha's dev stack and tests: system packages, a running Docker engine,
# the Debian trixie base image, and the Python virtual environment. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '\033[1m==> %s\033[0m\n' "$*"; }
need_root() { [ "$(id -u)" = 0 ] || { echo "host-setup: run as root (or install $* yourself)" >&2; exit 1; }; }

packages=(docker.io debootstrap iproute2 openssh-client)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null | grep -qx installed || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  need_root "${missing[*]}"
  log "installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! docker info >/dev/null 2>&1; then
  need_root "a running Docker engine"
  log "starting dockerd"
  nohup dockerd --data-root "${PGHA_DOCKER_ROOT:-/var/lib/docker}" >/var/log/pgha-dockerd.log 2>&1 &
  deadline=$((SECONDS + 90))
  until docker info >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "host-setup: dockerd did not come up in 90 s; see /var/log/pgha-dockerd.log" >&2
      tail -20 /var/log/pgha-dockerd.log >&2 || true
      exit 1
    fi
    sleep 1
  done
fi

scripts/base-image.sh

if [ ! -x .venv/bin/python ] || ! cmp -s requirements-dev.txt .venv/.requirements-dev.txt 2>/dev/null \
   || ! cmp -s requirements.txt .venv/.requirements.txt 2>/dev/null; then
  log "creating .venv"
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -r requirements-dev.txt
  cp requirements-dev.txt .venv/.requirements-dev.txt
  cp requirements.txt .venv/.requirements.txt
fi
