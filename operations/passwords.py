"""The PostgreSQL roles' passwords follow the generated credentials: what makes a rotation safe.

A rotated credential (pgha:rotate) gets a new random value; the files that carry it (patroni.yml, pgpass,
the DSN outputs) change on the same deployment. The roles inside PostgreSQL must take the new password
before any member connects with it, or replication would fail the moment a replica reconnects. So on every
PostgreSQL node a step runs before its converge writes the new files:

- the leader sets each role's SCRAM verifier (only where it differs; the plain password never reaches the
  server, so no log can show it), for the superuser, replication, rewind, application and read-only roles;
- every node then waits until each role's new password authenticates at the leader over verified TLS, so its
  converge starts only when the new passwords work; the old ones are refused from then on.

Connections open at that moment keep running (PostgreSQL checks a password only when a connection starts).
The step's script holds the passwords: it is a secret, it travels on stdin, and a password appears neither on
a command line nor in an environment. It runs again only when a password changes. On a first deployment no
cluster runs yet and no data exists: the roles get their passwords when the cluster bootstraps.
"""

from __future__ import annotations

import shlex

import pulumi

from config.models import ClusterConfig, Host
from render import paths
from render.bootstrap import sql_ident, sql_literal, verifier_literal
from render.credentials import REPLICATION_USER, REWIND_USER, SUPERUSER, Credentials
from render.shell import HEALTH_DEADLINE_S

STEP = "passwords"


def roles(cfg: ClusterConfig, creds: Credentials) -> list[tuple[str, str]]:
    """(role, password) of every PostgreSQL role whose password pgha generates."""
    pg = cfg.postgres
    return [(SUPERUSER, creds.superuser), (REPLICATION_USER, creds.replication), (REWIND_USER, creds.rewind),
            (pg.app_user, creds.app), (pg.readonly_user, creds.readonly)]


def render_password_sql(cfg: ClusterConfig, creds: Credentials) -> str:
    """SQL, run on the leader as the superuser over the local socket: each role's verifier, where it differs."""
    blocks = ["\\set ON_ERROR_STOP on", "SET log_statement = 'none';"]
    for role, password in roles(cfg, creds):
        verifier, ident = verifier_literal(cfg, role, password), sql_ident(role)
        blocks.append(
            f"DO $pgha$ BEGIN IF (SELECT rolpassword FROM pg_authid WHERE rolname = {sql_literal(role)}) "
            f"IS DISTINCT FROM {verifier} THEN ALTER ROLE {ident} PASSWORD {verifier}; "
            f"RAISE NOTICE 'pgha-passwords: % password set', {sql_literal(role)}; END IF; END $pgha$;")
    return "\n".join(blocks) + "\n"


def render_password_script(cfg: ClusterConfig, node: Host, creds: Credentials, ca_pem: str) -> str:
    """The step's bash script on PostgreSQL node `node` (it holds secrets: a secret Output, on stdin). It
    brings the CA bundle it verifies the leader with: the node's own files may not be written yet."""
    addresses = " ".join(str(n.address) for n in cfg.postgres.nodes)
    port, api = cfg.postgres.port, cfg.patroni.rest_api_port
    pgpass = "".join(f"*:{port}:*:{role}:{password}\n" for role, password in roles(cfg, creds))
    checks = "\n".join(
        f"  ok \"host=$leader port={port} dbname=postgres user={shlex.quote(role)} sslmode=verify-full "
        f"sslrootcert=$ca connect_timeout=3\" || pending+=({shlex.quote(role)})"
        for role, _ in roles(cfg, creds))
    return f"""set -euo pipefail
log() {{ echo "pgha-passwords: $*"; }}
deadline=$((SECONDS + {HEALTH_DEADLINE_S - 60}))
leader=""
until [ -n "$leader" ]; do
  for address in {addresses}; do
    if curl -sf -o /dev/null --max-time 3 "http://$address:{api}/primary"; then leader=$address; break; fi
  done
  [ -n "$leader" ] && break
  if [ ! -e {paths.PG_DATA}/PG_VERSION ]; then
    log "no running cluster and no data on {node.name}: the roles get their passwords when the cluster bootstraps"
    exit 0
  fi
  if [ $SECONDS -ge $deadline ]; then
    echo "pgha-passwords: no PostgreSQL node answers as the leader ({addresses}):" \
      "the roles' passwords cannot be set" >&2
    exit 1
  fi
  sleep 1
done
if [ "$leader" = {node.address} ]; then
  runuser -u postgres -- {paths.PG_BIN}/psql -XqtA -d postgres <<'PGHA_SQL' 2>&1 | sed 's/^.*NOTICE: *//'
{render_password_sql(cfg, creds)}PGHA_SQL
fi
pass=$(mktemp) ca=$(mktemp)
trap 'rm -f "$pass" "$ca"' EXIT
cat > "$pass" <<'PGHA_PGPASS'
{pgpass}PGHA_PGPASS
cat > "$ca" <<'PGHA_CA'
{ca_pem.rstrip()}
PGHA_CA
ok() {{ PGPASSFILE="$pass" {paths.PG_BIN}/psql "$1" -XtAc 'SELECT 1' >/dev/null 2>&1; }}
while :; do
  pending=()
{checks}
  if [ ${{#pending[@]}} -eq 0 ]; then log "every role's password works at the leader $leader"; exit 0; fi
  if [ $SECONDS -ge $deadline ]; then
    echo "pgha-passwords: at the leader $leader the password of ${{pending[*]}} is still refused" >&2
    exit 1
  fi
  sleep 1
done
"""


def password_script(cfg: ClusterConfig, node: Host, creds: pulumi.Output[Credentials],
                    ca_pem: pulumi.Input[str]) -> pulumi.Output[str]:
    """The step's script as a secret Output."""
    return pulumi.Output.secret(pulumi.Output.all(creds, ca_pem).apply(
        lambda v: render_password_script(cfg, node, v[0], str(v[1]))))
