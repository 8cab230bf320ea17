"""The PostgreSQL roles' passwords follow the generated credentials: what makes a rotation safe.

A rotated credential (pgha:rotate) gets a new random value; the files that carry it (patroni.yml, pgpass,
the DSN outputs) change on the same deployment. The roles inside PostgreSQL must take the new password
before any member connects with it, or replication would fail the moment a replica reconnects. So on every
PostgreSQL node a step runs before its converge writes the new files:

- the leader sets each role's SCRAM verifier (only where it differs; the plain password never reaches the
  server, so no log can show it), for the superuser, replication, rewind, application and read-only roles;
- every node then waits until the new passwords of the roles members connect with (replication, rewind)
  authenticate at the leader over verified TLS, so its converge starts only when they work; the old ones are
  refused from then on. (pg_hba admits nothing else from a member: the superuser only over the local socket,
  the application roles only from the HAProxy nodes and `client_cidrs`.)

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
from render.shell import HEALTH_DEADLINE_S, REST_CURL, local_rest, python_rest_context, rest_url

STEP = "passwords"


def roles(cfg: ClusterConfig, creds: Credentials) -> list[tuple[str, str]]:
    """(role, password) of every PostgreSQL role whose password pgha generates."""
    pg = cfg.postgres
    return [(SUPERUSER, creds.superuser), (REPLICATION_USER, creds.replication), (REWIND_USER, creds.rewind),
            (pg.app_user, creds.app), (pg.readonly_user, creds.readonly)]


def network_roles(creds: Credentials) -> dict[str, tuple[str, str, str]]:
    """role -> (password, libpq target, a statement it may run) of the roles a member connects to another
    member with, as pg_hba admits them from a member: replication connections as the replication role, the
    `postgres` database as the rewind role. (The superuser only connects over the local socket and the
    application roles only from the HAProxy nodes and `client_cidrs`: the leader sets their verifiers, nobody
    dials them from here.)"""
    return {REPLICATION_USER: (creds.replication, "replication=true", "IDENTIFY_SYSTEM"),
            REWIND_USER: (creds.rewind, "dbname=postgres", "SELECT 1")}


def _set_verifiers(cfg: ClusterConfig, creds: Credentials) -> str:
    """One statement (one line, one transaction): each role's verifier where it differs; when a role does not
    exist, nothing changes and it fails."""
    names = ", ".join(sql_literal(role) for role, _ in roles(cfg, creds))
    changes = []
    for role, password in roles(cfg, creds):
        verifier, name = verifier_literal(cfg, role, password), sql_literal(role)
        changes.append(
            f"IF (SELECT rolpassword FROM pg_authid WHERE rolname = {name}) IS DISTINCT FROM {verifier} THEN "
            f"ALTER ROLE {sql_ident(role)} PASSWORD {verifier}; RAISE NOTICE 'pgha-passwords: % password set', "
            f"{name}; END IF;")
    return ("DO $pgha$ DECLARE missing text; BEGIN SELECT string_agg(r, ', ') INTO missing FROM unnest(ARRAY["
            f"{names}]) AS r WHERE NOT EXISTS (SELECT FROM pg_authid WHERE rolname = r); IF missing IS NOT NULL THEN "
            "RAISE EXCEPTION 'pgha-passwords: no role %: nothing was changed', missing; END IF; "
            + " ".join(changes) + " END $pgha$;")


def render_password_sql(cfg: ClusterConfig, creds: Credentials) -> str:
    """SQL, run on the leader as the superuser over the local socket: each role's verifier, where it differs."""
    return "\n".join(["\\set ON_ERROR_STOP on", "SET log_statement = 'none';", _set_verifiers(cfg, creds)]) + "\n"


def find_leader(cfg: ClusterConfig, indent: str = "", cacert: str = paths.PG_TLS_CA) -> str:
    """Shell that sets `leader` to the address of the PostgreSQL node whose Patroni answers as the leader
    (/primary, over HTTPS verified with `cacert`), empty when none does. A node whose REST API still speaks
    plain HTTP (a cluster deployed before the REST API's TLS, on the deployment that moves it) is asked so."""
    addresses = " ".join(str(n.address) for n in cfg.postgres.nodes)
    api = cfg.patroni.rest_api_port
    probe = local_rest(api, "/primary", "-sf -o /dev/null --max-time 3", host="$address", cacert=cacert)
    lines = ['leader=""', f"for address in {addresses}; do", f"  if {probe}; then leader=$address; break; fi",
             "done"]
    return "\n".join(indent + line for line in lines)


def leader_answers(cfg: ClusterConfig) -> str:
    """A shell condition: some PostgreSQL node's Patroni answers as the leader."""
    return f'(\n{find_leader(cfg, "  ")}\n  [ -n "$leader" ]\n)'


def render_adoption(cfg: ClusterConfig, node: Host, creds: Credentials) -> str:
    """Bash run by node `node`'s first converge when it finds a data directory and the stack adopts it
    (pgha:adopt_existing_data), before Patroni starts: a new deployment has new passwords and a new DCS
    namespace, so the data is taken over as Patroni takes over a standalone server, the primary first.

    - A primary's data (no standby.signal): its roles take this stack's passwords in single-user mode (no
      server runs, nothing listens, the verifiers are written like any change, to the WAL), then Patroni
      starts on it alone and leads. Refused while another node already leads (two data directories that
      claim to be the primary), or while the backup repository holds this stanza from the deployment that
      made the data: that one is encrypted with a passphrase this stack does not have.
    - A standby's data: it starts once a leader answers, so it can never win an election against the data
      it replicated (`defer=1` when none does yet; `start_deferred` starts it later).
    """
    repo, stanza, data = cfg.backup.repo_path, cfg.stanza, paths.PG_DATA
    sql = "\n".join(["SET log_statement = 'none';", _set_verifiers(cfg, creds)])
    old_repo = (f"{node.name}: the backup repository {repo} holds stanza {stanza}, written by the deployment whose "
                f"data this is and encrypted with a passphrase this stack does not have: move {repo}/archive and "
                f"{repo}/backup aside (its backups stay restorable with the old passphrase), then deploy again")
    two = (f"{node.name}: {data} holds a primary's data, but another node already leads the adopted cluster: two "
           "data directories claim to be the primary, this one not behind. Keep the newer one (pg_controldata: "
           "latest checkpoint, timeline), move the other aside, then deploy again")
    api = cfg.patroni.rest_api_port
    return f"""log() {{ echo "pgha-adopt: {node.name}: $*"; }}
# Patroni's cache of the old deployment's dynamic configuration: with it, Patroni would start under the old
# settings (the pause a destroy leaves among them: a paused Patroni starts no PostgreSQL).
rm -f {data}/patroni.dynamic.json
{find_leader(cfg)}
if [ ! -e {data}/standby.signal ] && [ -n "$leader" ]; then
  # A former primary beside the one that leads: one the leader's history left behind (it stopped cleanly
  # before the leader's timeline forked from its own) rejoins as its standby; any other is refused.
  verdict=$(LC_ALL=C python3 - "$leader" <<'PGHA_PY' || echo "unknown: the leader's history could not be read"
import json, subprocess, sys, urllib.request
fields = dict(line.split(":", 1) for line in subprocess.run(
    ["{paths.PG_BIN}/pg_controldata", "-D", "{data}"], capture_output=True, text=True, check=True).stdout.splitlines()
    if ":" in line)
state, timeline = fields["Database cluster state"].strip(), int(fields["Latest checkpoint's TimeLineID"])
high, low = fields["Latest checkpoint location"].strip().split("/")
at = (int(high, 16) << 32) + int(low, 16)
with urllib.request.urlopen(f"{rest_url('{sys.argv[1]}', api, '/history')}", timeout=5,
                            context={python_rest_context()}) as response:
    forks = {{int(entry[0]): int(entry[1]) for entry in json.load(response)}}
behind = state == "shut down" and timeline in forks and at < forks[timeline]
print("behind" if behind else f"not behind: {{state}}, timeline {{timeline}} at {{at}}, the leader forked {{forks}}")
PGHA_PY
)
  if [ "$verdict" = behind ]; then
    log "a former primary's data, behind the leader's timeline: it rejoins as a standby"
    runuser -u postgres -- touch {data}/standby.signal
  else
    echo {shlex.quote(f"pgha-adopt: {two}")} "($verdict)" >&2
    exit 1
  fi
fi
if [ -e {data}/standby.signal ]; then
  if [ -n "$leader" ]; then
    log "a standby's data: it follows the cluster's leader"
  else
    log "a standby's data: it starts once the node with the primary's data leads"
    defer=1
  fi
else
  for info in {repo}/archive/{stanza}/archive.info {repo}/backup/{stanza}/backup.info; do
    if [ -e "$info" ]; then echo {shlex.quote(f"pgha-adopt: {old_repo}")} >&2; exit 1; fi
  done
  sql=$(mktemp)
  cat > "$sql" <<'PGHA_SQL'
{sql}
PGHA_SQL
  status=0
  out=$(runuser -u postgres -- {paths.PG_BIN}/postgres --single -D {data} -c synchronous_standby_names= \
    -c log_min_messages=notice postgres < "$sql" 2>&1) || status=$?
  rm -f "$sql"
  if [ $status -ne 0 ] || [[ "$out" == *ERROR:* ]]; then
    printf '%s\\n' "$out" | grep -E 'ERROR|FATAL|PANIC' | sed 's/^/pgha-adopt: /' >&2
    echo "pgha-adopt: {node.name}: the roles' passwords could not be set in the adopted data" >&2
    exit 1
  fi
  printf '%s\\n' "$out" | sed -n 's/.*NOTICE: *\\(pgha-passwords: \\)/\\1/p'
  log "a primary's data: its roles took this stack's passwords; Patroni starts on it and leads"
fi
"""


def adoption_script(cfg: ClusterConfig, node: Host, creds: pulumi.Output[Credentials]) -> pulumi.Output[str]:
    """`render_adoption` as a secret Output (it holds the roles' verifiers)."""
    return pulumi.Output.secret(creds.apply(lambda c: render_adoption(cfg, node, c)))


def render_password_script(cfg: ClusterConfig, node: Host, creds: Credentials, ca_pem: str) -> str:
    """The step's bash script on PostgreSQL node `node` (it holds secrets: a secret Output, on stdin). It
    brings the CA bundle it verifies the leader with: the node's own files may not be written yet."""
    addresses = " ".join(str(n.address) for n in cfg.postgres.nodes)
    port, api = cfg.postgres.port, cfg.patroni.rest_api_port
    # A new deployment that adopts data (nothing of it runs yet): its converge sets the passwords.
    adopting = (f'  if ! {REST_CURL} -s -o /dev/null --max-time 3 {rest_url("127.0.0.1", api, "/")}; then\n'
                f'    log "data on {node.name} and no cluster runs: the adoption sets the roles\' passwords"\n'
                "    exit 0\n  fi\n") if cfg.adopt_existing_data else ""
    network = network_roles(creds)
    pgpass = "".join(f"*:{port}:*:{role}:{password}\n" for role, (password, _, _) in network.items())
    checks = "\n".join(
        f"  ok \"host=$leader port={port} user={shlex.quote(role)} {target} sslmode=verify-full "
        f"sslrootcert=$ca connect_timeout=3\" {shlex.quote(sql)} || pending+=({shlex.quote(role)})"
        for role, (_, target, sql) in network.items())
    return f"""set -euo pipefail
log() {{ echo "pgha-passwords: $*"; }}
pass=$(mktemp) ca=$(mktemp)
trap 'rm -f "$pass" "$ca"' EXIT
cat > "$pass" <<'PGHA_PGPASS'
{pgpass}PGHA_PGPASS
cat > "$ca" <<'PGHA_CA'
{ca_pem.rstrip()}
PGHA_CA
deadline=$((SECONDS + {HEALTH_DEADLINE_S - 60}))
leader=""
until [ -n "$leader" ]; do
{find_leader(cfg, "  ", cacert='"$ca"')}
  [ -n "$leader" ] && break
  if [ ! -e {paths.PG_DATA}/PG_VERSION ]; then
    log "no running cluster and no data on {node.name}: the roles get their passwords when the cluster bootstraps"
    exit 0
  fi
{adopting}  if [ $SECONDS -ge $deadline ]; then
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
ok() {{ PGPASSFILE="$pass" {paths.PG_BIN}/psql "$1" -XtAc "$2" >/dev/null 2>&1; }}
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
