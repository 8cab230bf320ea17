#!/bin/bash
# Managed by pgha (Pulumi); do not edit: changes are overwritten.
# Patroni applies bootstrap.dcs only when it creates the cluster. This reconciler keeps the dynamic
# configuration in the DCS equal to /etc/patroni/dynamic.yml afterwards: on the leader it replaces it when it
# differs (`patronictl edit-config` prints "Not changed" otherwise), so hand edits are reverted and
# the stack config stays the one source of truth; on replicas it does nothing. Parameters that need a
# restart then show as pending_restart in `patronictl list`.
set -uo pipefail

while true; do
    if curl --cacert /etc/patroni/tls/ca.crt -sf -o /dev/null --max-time 5 "https://127.0.0.1:8008/primary"; then
        if ! out=$(patronictl -c "/etc/patroni/patroni.yml" edit-config --replace "/etc/patroni/dynamic.yml" --force 2>&1); then
            echo "pgha-dcs-sync: replacing the DCS configuration with /etc/patroni/dynamic.yml failed: $out" >&2
        elif [ "$out" != "Not changed" ]; then
            echo "pgha-dcs-sync: replaced the DCS configuration with /etc/patroni/dynamic.yml"
        fi
    fi
    sleep 10
done
