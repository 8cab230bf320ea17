#!/usr/bin/env bash
# Brings up the dev stack on this machine's Docker engine with the real Pulumi CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/host-setup.sh
if ! command -v pulumi >/dev/null 2>&1; then
  if [ ! -x "$HOME/.pulumi/bin/pulumi" ]; then
    echo "==> installing the Pulumi CLI with its official installer"
    curl -fsSL https://get.pulumi.com | sh
  fi
  export PATH="$HOME/.pulumi/bin:$PATH"
fi
state="${PGHA_STATE_DIR:-$PWD/.pulumi-state}"
mkdir -p "$state"
pulumi login "file://$state"
# A passphrase for the local secrets provider, generated once and kept beside the state (mode 0600).
if [ -z "${PULUMI_CONFIG_PASSPHRASE:-}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
  if [ ! -s "$state/passphrase" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 > "$state/passphrase")
  fi
  export PULUMI_CONFIG_PASSPHRASE_FILE="$state/passphrase"
fi
pulumi stack select --create dev
pulumi up --stack dev --yes "$@"
pulumi stack output --stack dev
