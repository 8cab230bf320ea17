#!/bin/bash
# Managed by pgha (Pulumi); do not edit: changes are overwritten.
# pgha-backup full|diff|incr|check: take a pgBackRest backup of stanza pgha-prod (or, with check,
# run `pgbackrest check`: a WAL switch that must reach the repository) if this node is the Patroni
# leader; on any other node exit 0 without doing anything, so backups follow the leader (check on
# another node only confirms that the cluster has a running leader).
set -euo pipefail

type="${1:-}"
case "$type" in
    full|diff|incr|check) ;;
    *)
        echo "pgha-backup: the argument must be one of full|diff|incr|check (given: '$type')" >&2
        exit 2
        ;;
esac

if ! curl --cacert /etc/patroni/tls/ca.crt -sf -o /dev/null --max-time 5 "https://127.0.0.1:8008/primary"; then
    # Nothing to back up here. A check still fails while the cluster has no running leader (a failed
    # bootstrap, a lost DCS): a deployment must not call such a cluster ready.
    if [ "$type" = check ] && ! { curl --cacert /etc/patroni/tls/ca.crt -sf --max-time 5 "https://127.0.0.1:8008/cluster" || curl -sf --max-time 5 "http://127.0.0.1:8008/cluster"; } | python3 -c '
import json, sys
members = json.load(sys.stdin).get("members", [])
sys.exit(not any(m.get("role") == "leader" and m.get("state") == "running" for m in members))' 2>/dev/null; then
        echo "pgha-backup: the cluster has no running leader (Patroni's /cluster on this node)" >&2
        exit 1
    fi
    echo "pgha-backup: this node is not the primary; nothing to do"
    exit 0
fi

# Schedules that fall on the same minute run one after the other instead of failing on
# pgBackRest's lock.
exec 9>>"/var/run/postgresql/pgha-backup.lock"
flock 9

pgbackrest --stanza=pgha-prod stanza-create
if [ "$type" = check ]; then
    exec pgbackrest --stanza=pgha-prod check
fi
pgbackrest --stanza=pgha-prod --type="$type" backup
