"""Day-2 steps on the etcd cluster: wait until every configured member is healthy, so Patroni starts against a
store with a quorum; enable etcd's access control before any Patroni starts (Patroni 4.0.7, given a password,
cannot start against an etcd whose access control is off: it takes the gateway's "authentication is not
enabled" answer, which carries `message` where it reads `error`, for an error, and waits on etcd); and, once
Patroni uses only the configured members, remove the members the stack no longer has, one at a time (`member
remove` before the member is stopped: its resources go last)."""

from __future__ import annotations

import shlex

import pulumi

from config.models import ClusterConfig
from render.credentials import ETCD_PATRONI_USER, ETCD_ROOT_USER, Credentials, etcd_patroni_user
from render.etcd import ETCDCTL, ETCDCTL_ARGS, client_url
from render.patroni import ETCD_USER_TAG, dcs_namespace
from render.shell import step_script, until_ok
from targets.base import Target


def endpoints(cfg: ClusterConfig) -> list[str]:
    """Every member's client URL."""
    return [client_url(cfg, m.address) for m in cfg.etcd.members]


def wait_healthy(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the step on the first member: `etcdctl endpoint health` of every member succeeds."""
    check = (*ETCDCTL_ARGS, f"--endpoints={','.join(endpoints(cfg))}", "endpoint", "health")
    return target.run_step(name, cfg.etcd.members[0], step_script(until_ok(check)), depends_on, parent)


def render_prune(cfg: ClusterConfig) -> str:
    """Bash (no secrets) that removes from the etcd cluster every member whose peer URL is not a configured
    member's, one at a time: each removal only while every configured member is healthy, and the next one
    only once they are healthy again. It refuses to remove a majority of the members it finds."""
    # By address: a member's peer URL changes scheme in the move from plain HTTP, and stays a configured one.
    configured = " ".join(f"{m.address}:{cfg.etcd.peer_port}" for m in cfg.etcd.members)
    every = ",".join(endpoints(cfg))
    healthy = until_ok((*ETCDCTL_ARGS, f"--endpoints={every}", "endpoint", "health"), 120)
    return step_script(f"""{_ctl(cfg)}
configured=" {configured} "
listed=$(ctl member list)
total=$(echo "$listed" | grep -c . || true)
leaving=$(echo "$listed" | awk -F', ' -v keep="$configured" '{{ at = $4; sub("^[a-z]+://", "", at) }}
  index(keep, " " at " ") == 0 {{print $1 "," $3 "," $4}}')
count=$(echo "$leaving" | grep -c . || true)
if [ "$count" = 0 ]; then echo "pgha-etcd: every member is a configured one: nothing to remove"; exit 0; fi
if [ $((count * 2)) -ge "$total" ]; then
  echo "pgha-etcd: refused: removing $count of $total members at once would remove a majority of the etcd cluster" >&2
  exit 1
fi
for member in $leaving; do
  IFS=, read -r id name url <<<"$member"
{healthy}  echo "pgha-etcd: removing member ${{name:-(unstarted)}} ($id, $url)"
  ctl member remove "$id"
done
{healthy}""")


def prune(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
          parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the removal step on the first member, after `depends_on` (every Patroni node: they use only the
    configured members by then). It runs again when the configured membership changes."""
    return target.run_step(name, cfg.etcd.members[0], render_prune(cfg), depends_on, parent)


def render_access(cfg: ClusterConfig, creds: Credentials) -> str:
    """Bash (it holds the Patroni user's password: a secret, on stdin) that sets up etcd's access control as
    root and enables it: the user root (no password: the `root` client certificate is its only way in), the
    role Patroni's users have, reading and writing only under the cluster's key prefix, and the user Patroni
    logs in as at the current rotation generation (etcd_patroni_user; the users of earlier generations stay
    until every Patroni logs in as this one: render_enable). Each command tolerates what an earlier run made;
    the password is set again (a user made by hand)."""
    if not creds.etcd or any(ch.isspace() for ch in creds.etcd):
        # etcdctl reads the password from its standard input as one word (the generated ones are alphanumeric).
        raise ValueError("credentials.etcd: empty or holds white space, which etcdctl cannot read as a password")
    prefix = shlex.quote(dcs_namespace(creds))
    role, user, password = ETCD_PATRONI_USER, etcd_patroni_user(cfg.rotate.etcd), shlex.quote(creds.etcd)
    return step_script(f"""{_ctl(cfg)}
ctl user get {ETCD_ROOT_USER} >/dev/null 2>&1 || ctl user add {ETCD_ROOT_USER} --no-password
ctl user grant-role {ETCD_ROOT_USER} root >/dev/null
ctl role get {role} >/dev/null 2>&1 || ctl role add {role}
ctl role grant-permission {role} --prefix=true readwrite {prefix} >/dev/null
if ctl user get {user} >/dev/null 2>&1; then
  printf '%s\\n' {password} | ctl user passwd {user} --interactive=false >/dev/null
else
  printf '%s\\n' {password} | ctl user add {user} --interactive=false >/dev/null
fi
ctl user grant-role {user} {role} >/dev/null
{_enable_now(cfg, prefix, user)}""")


def _ctl(cfg: ClusterConfig) -> str:
    """Bash defining `ctl`: etcdctl as root against every configured member."""
    return f'ctl() {{ {ETCDCTL} --endpoints={",".join(endpoints(cfg))} "$@"; }}'


def _auth_on(enabled: str, unless: str = "") -> str:
    """Bash that enables etcd's access control if it is off (saying `enabled`), unless the `elif` branch
    `unless` holds."""
    return f"""if ctl auth status | grep -q 'Status: true'; then
  echo "pgha-etcd: access control on"
{unless}else
  ctl auth enable
  echo "pgha-etcd: {enabled}"
fi
"""


def _enable_now(cfg: ClusterConfig, prefix: str, user: str) -> str:
    """Bash that enables the access control before any Patroni starts: at once on a new cluster; on a cluster
    moving from plain HTTP, where Patroni runs without its password, only after every node has it (the step
    after the nodes, render_enable); never in the move's first deployment."""
    if cfg.etcd.tls_migration:
        return """if ctl auth status | grep -q 'Status: true'; then
  echo "pgha-etcd: access control is on already (the move's second deployment ran); deploy without" \\
    "etcd.tls_migration" >&2
  exit 1
fi
echo "pgha-etcd: users and roles ready; access control stays off until the move's second deployment"
"""
    moving = f"""elif [ -n "$(ctl get --prefix --keys-only --limit=1 {prefix})" ]; then
  echo "pgha-etcd: Patroni runs under {prefix} without a password (the move from plain HTTP): access control" \\
    "goes on once every node has it"
"""
    return _auth_on(f"access control on: root by its client certificate, {user} under {prefix}", moving)


def render_enable(cfg: ClusterConfig, namespace: str, deadline_s: int = 120) -> str:
    """Bash (no secrets) run once every PostgreSQL node converged (`namespace`: Patroni's DCS namespace):
    enable etcd's access control if it is off (a cluster moving from plain HTTP: every Patroni has its password
    by then, given by a reload, and logs in at its next call); then remove the etcd users of earlier rotation
    generations, once every node's member key names the current one (Patroni publishes its tags after the
    reload that gave it the new login: etcd_login_tag). A node that does not within the deadline fails the
    step and every user stays: removed early, a user would refuse the Patroni still logging in as it."""
    user = etcd_patroni_user(cfg.rotate.etcd)
    tag = shlex.quote(f'"{ETCD_USER_TAG}":"{user}"')
    keys = " ".join(shlex.quote(f"{namespace}{cfg.name}/members/{n.name}") for n in cfg.postgres.nodes)
    return step_script(f"""{_ctl(cfg)}
{_auth_on("access control on (every Patroni has its password)")}
old=$(ctl user list | grep -E '^{ETCD_PATRONI_USER}(\\.[0-9]+)?$' | grep -vxF {shlex.quote(user)} || true)
if [ -z "$old" ]; then exit 0; fi
behind() {{ for key in {keys}; do ctl get "$key" --print-value-only | grep -qF {tag} || echo "${{key##*/}}"; done; }}
deadline=$((SECONDS + {deadline_s}))
while [ -n "$(behind)" ]; do
  if [ $SECONDS -ge $deadline ]; then
    echo "pgha-etcd: $(behind | xargs) still log in as an earlier etcd user after {deadline_s}s: keeping" $old \\
      "(deploy again once every Patroni took its configuration)" >&2
    exit 1
  fi
  sleep 1
done
for old_user in $old; do
  ctl user delete "$old_user" >/dev/null
  echo "pgha-etcd: removed the etcd user $old_user: every Patroni logs in as {user}"
done
""")


def enable_after(name: str, cfg: ClusterConfig, target: Target, namespace: pulumi.Output[str],
                 depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource | None:
    """Declare the step that enables the access control and removes rotated users after `depends_on` (every
    PostgreSQL node); none in the first deployment of the move from plain HTTP."""
    if cfg.etcd.tls_migration:
        return None
    script = namespace.apply(lambda ns: render_enable(cfg, ns))
    return target.run_step(name, cfg.etcd.members[0], script, depends_on, parent)


def enable_access(name: str, cfg: ClusterConfig, target: Target, creds: pulumi.Output[Credentials],
                  depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the access-control step on the first member, after `depends_on` (every member healthy); the
    Patroni nodes start after it."""
    script: pulumi.Output[str] = pulumi.Output.secret(creds.apply(lambda c: render_access(cfg, c)))  # type: ignore[arg-type]
    return target.run_step(name, cfg.etcd.members[0], script, depends_on, parent)
