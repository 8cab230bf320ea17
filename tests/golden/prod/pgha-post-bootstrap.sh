#!/bin/bash
# Managed by pgha (Pulumi); do not edit: changes are overwritten.
# Run once by Patroni after it bootstrapped a new cluster, with a connection string as $1.
# A non-zero exit makes Patroni discard the new data directory and bootstrap again.
set -euo pipefail

conn="${1:?usage: pgha-post-bootstrap CONNECTION-STRING}"

"/usr/lib/postgresql/17/bin/psql" "$conn" --no-psqlrc --quiet -v ON_ERROR_STOP=1 -f "/etc/patroni/post-bootstrap.sql"
# The repository must be ready before the first WAL segment needs archiving.
pgbackrest --stanza=pgha-prod stanza-create
