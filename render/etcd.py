"""etcd 3.5 of one member: its configuration file, its bootstrap settings and the scripts that start it and
tell its health.

The member's own settings (`etcd.yml`, what the running process reads: a change restarts it) are kept apart
from the bootstrap settings (`etcd-cluster.env`: the configured membership, read only when the data
directory is empty). A membership change rewrites the second file on every member and restarts none.

An empty member decides how to start when it starts (`pgha-etcd-start`): if another configured member serves
a linearizable read (an etcd cluster with a quorum exists), it joins that cluster (`initial-cluster-state:
existing`), first adding itself as a learner when the cluster does not list it, or replacing its own earlier
identity when the cluster lists it as a member that has run (a host rebuilt empty) or under its name at
another address (a host moved); otherwise it forms a new
cluster with the configured members (a first deployment). A member with data starts from it, unless the
data was made for another peer URL (recorded beside it: its host moved with its disk, as a docker volume
does): etcd would keep announcing the old address, so the data is set aside and the member joins as an
empty one, replacing its identity (only while the other members hold a quorum). A learner is promoted to a
voter by its health check once it has caught up (`pgha-etcd-health`): etcd refuses the promotion before
that, so a new member never counts in the quorum before it holds the data.

Every path is TLS with client certificates from the cluster CA: the client port admits a certificate of the
cluster CA only, the peer port only the members' (ETCD_MEMBER_CN). Over the client port, etcd's role-based
access control then says what each may do: pgha's own etcdctl calls present the `root` certificate (etcd maps
its common name to the user root), Patroni logs in as the user `patroni`, whose role reaches only its key
prefix (operations/etcd.py enables it); any other certificate of the CA acts as a user that does not exist.

A cluster an earlier pgha ran in plain HTTP moves to this in two deployments (operations/topology.py refuses
it otherwise): with `etcd.tls_migration` each member serves both schemes on its client port (etcd tells them
apart by the first bytes) and loads the TLS settings, with which it dials any peer whose URL is https, while
its own peer URL and what it advertises stay plain; in the next, each member's start script finds its peer URL
changed in scheme only and records the https one by `member update` before it starts from its data.

Learners rather than voters: a voter added before it has started (and caught up) raises the quorum at once,
and a second failure during the join loses it; a learner counts only once promoted. etcd allows one learner
at a time: the members join one after another.
"""

from __future__ import annotations

import shlex
from typing import Any

from config.models import ClusterConfig, Host
from render.common import dump_yaml, require_member, with_header
from render.credentials import ETCD_MEMBER_CN
from render.paths import (
    ETCD_CLUSTER_ENV,
    ETCD_CONFIG,
    ETCD_ROOT_CERT,
    ETCD_ROOT_KEY,
    ETCD_TLS_CA,
    ETCD_TLS_CERT,
    ETCD_TLS_KEY,
    etcd_data_dir,
)

# etcd's own defaults, written out so the timing Patroni depends on is visible in the file.
HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 1000
# pgha's etcdctl calls on an etcd member: as etcd's root user, by the `root` client certificate.
ETCDCTL_ARGS = ("/usr/bin/etcdctl", "--dial-timeout=2s", "--command-timeout=5s", f"--cacert={ETCD_TLS_CA}",
                f"--cert={ETCD_ROOT_CERT}", f"--key={ETCD_ROOT_KEY}")
ETCDCTL = " ".join(ETCDCTL_ARGS)


def initial_cluster_token(cfg: ClusterConfig) -> str:
    """The etcd cluster token: derived from the cluster name so members of two clusters never join."""
    return f"{cfg.name}-etcd"


def scheme(cfg: ClusterConfig) -> str:
    """The scheme the members advertise: https, but http during the first deployment of the move from plain
    HTTP (`etcd.tls_migration`), when the members not restarted yet speak plain HTTP only."""
    return "http" if cfg.etcd.tls_migration else "https"


def peer_url(cfg: ClusterConfig, member: Host) -> str:
    """The peer URL of `member`."""
    return f"{scheme(cfg)}://{member.address}:{cfg.etcd.peer_port}"


def client_url(cfg: ClusterConfig, address: object) -> str:
    """The client URL of a member at `address` (pgha's etcdctl presents the root certificate to either
    scheme: over http it is not used)."""
    return f"{scheme(cfg)}://{address}:{cfg.etcd.client_port}"


def other_client_urls(cfg: ClusterConfig, member: Host) -> str:
    """The client URLs of every configured member but `member`, comma-separated (as etcdctl takes them)."""
    return ",".join(client_url(cfg, m.address) for m in cfg.etcd.members if m != member)


def render_etcd(cfg: ClusterConfig, member: Host) -> str:
    """The YAML config file of etcd member `member` (one of cfg.etcd.members): its own settings only."""
    require_member(member, cfg.etcd.members, "etcd.members")
    port = cfg.etcd.client_port
    # Moving from plain HTTP, the client port serves both schemes (etcd tells them apart by the first bytes):
    # Patroni and pgha's etcdctl go on working whichever members have restarted.
    schemes = ("http", "https") if cfg.etcd.tls_migration else ("https",)
    data: dict[str, Any] = {
        "name": member.name,
        "data-dir": etcd_data_dir(cfg.name),
        "listen-peer-urls": peer_url(cfg, member),
        "listen-client-urls": ",".join(f"{s}://{a}:{port}" for a in (member.address, "127.0.0.1") for s in schemes),
        "initial-advertise-peer-urls": peer_url(cfg, member),
        "advertise-client-urls": client_url(cfg, member.address),
        # Clients (pgha's etcdctl, Patroni) present a certificate of the cluster CA; the peers the members'.
        # A member dials its peers with these settings whatever its own listeners' scheme: while moving from
        # plain HTTP, every member holds them before any peer URL becomes https.
        "client-transport-security": {"cert-file": ETCD_TLS_CERT, "key-file": ETCD_TLS_KEY,
                                      "trusted-ca-file": ETCD_TLS_CA, "client-cert-auth": True},
        "peer-transport-security": {"cert-file": ETCD_TLS_CERT, "key-file": ETCD_TLS_KEY,
                                    "trusted-ca-file": ETCD_TLS_CA, "client-cert-auth": True,
                                    "allowed-cn": [ETCD_MEMBER_CN]},
        "heartbeat-interval": HEARTBEAT_INTERVAL_MS,
        "election-timeout": ELECTION_TIMEOUT_MS,
        # Patroni rewrites its keys every loop_wait: without compaction the database grows until
        # etcd raises the NOSPACE alarm and refuses writes.
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "enable-v2": False,
        "log-level": "info",
        "logger": "zap",
        "log-outputs": ["stderr"],
    }
    return dump_yaml(data)


def render_etcd_cluster(cfg: ClusterConfig, member: Host) -> str:
    """The bootstrap settings of `member` (shell assignments read by pgha-etcd-start and pgha-etcd-health):
    the configured membership, and the other members' client URLs."""
    require_member(member, cfg.etcd.members, "etcd.members")
    values = {
        "PGHA_ETCD_NAME": member.name,
        "PGHA_ETCD_PEER_URL": peer_url(cfg, member),
        "PGHA_ETCD_INITIAL_CLUSTER": ",".join(f"{m.name}={peer_url(cfg, m)}" for m in cfg.etcd.members),
        "PGHA_ETCD_TOKEN": initial_cluster_token(cfg),
        "PGHA_ETCD_OTHERS": other_client_urls(cfg, member),
    }
    return with_header("".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items()))


def render_etcd_start(cfg: ClusterConfig) -> str:
    """The etcd process (run as the etcd user): a member with data starts from its files; an empty one joins
    the running cluster or forms a new one (see the module docstring)."""
    data = etcd_data_dir(cfg.name)
    start = f"{data}.start.yml"
    marker = f"{data}.peer-url"
    return with_header(f"""#!/bin/bash
set -euo pipefail
. {ETCD_CLUSTER_ENV}
say() {{ echo "pgha-etcd-start: $*" >&2; }}
ctl() {{ {ETCDCTL} --endpoints="$PGHA_ETCD_OTHERS" "$@"; }}
# A linearizable read answers only where a quorum is: an etcd cluster runs already.
quorum() {{ [ -n "$PGHA_ETCD_OTHERS" ] && ctl get --consistency=l pgha-etcd-probe >/dev/null 2>&1; }}
# etcd refuses a membership change until it is sure of its quorum ("unhealthy cluster": every member connected
# for 5 s; a member that stopped a moment ago still counts as connected): each is tried for a minute.
change() {{
  for try in $(seq 1 30); do
    if ctl member "$@" >&2; then return 0; fi
    sleep 2
  done
  say "the running cluster refused 'member $1' 30 times: giving up"
  return 1
}}
umask 077
if [ -d {data}/member ]; then
  # The peer URL the data's identity was made for (kept beside it; data older than the file is this URL's).
  was=$(cat {marker} 2>/dev/null || true)
  if [ -z "$was" ] || [ "$was" = "$PGHA_ETCD_PEER_URL" ]; then
    [ -n "$was" ] || echo "$PGHA_ETCD_PEER_URL" > {marker}
    exec /usr/bin/etcd --config-file {ETCD_CONFIG}
  fi
  if [ "${{was#*://}}" = "${{PGHA_ETCD_PEER_URL#*://}}" ]; then
    # The same address in another scheme (the move from plain HTTP to TLS): the identity stays, the cluster
    # learns the new URL (etcd takes a peer URL from its membership, never from a member's settings, once it
    # has data). Only with a quorum of the others, who hold the certificates to dial it by then.
    if ! quorum; then
      say "the peer URL changes from $was to $PGHA_ETCD_PEER_URL, and no quorum of the other members answers" \
        "to record it: not starting"
      exit 1
    fi
    id=$(ctl member list | awk -F', ' -v url="$was" '$4 == url {{print $1}}')
    if [ -n "$id" ]; then
      say "the peer URL changes from $was to $PGHA_ETCD_PEER_URL: updating member $id"
      change update "$id" --peer-urls="$PGHA_ETCD_PEER_URL"
    elif [ -z "$(ctl member list | awk -F', ' -v url="$PGHA_ETCD_PEER_URL" '$4 == url')" ]; then
      say "the cluster lists this member neither at $was nor at $PGHA_ETCD_PEER_URL: not starting"
      exit 1
    fi
    echo "$PGHA_ETCD_PEER_URL" > {marker}
    exec /usr/bin/etcd --config-file {ETCD_CONFIG}
  fi
  # The host moved with its data (a volume kept): the cluster knows this identity only at the old address,
  # and etcd ignores a new peer URL for a member with data. The identity is replaced, as for an empty host.
  if ! quorum; then
    say "the data is of this member's identity at $was, and no quorum of the other members answers to join" \\
      "them anew from $PGHA_ETCD_PEER_URL: not starting"
    exit 1
  fi
  say "the data is of this member's identity at $was; the member moved to $PGHA_ETCD_PEER_URL: setting the" \\
    "data aside ({data}.moved) to join anew"
  rm -rf {data}.moved
  mv {data} {data}.moved
fi
state=new cluster=$PGHA_ETCD_INITIAL_CLUSTER
if quorum; then
  state=existing
  # ID, status, name, peer URLs, client URLs, is learner
  mine=$(ctl member list | awk -F', ' -v url="$PGHA_ETCD_PEER_URL" '$4 == url')
  if [ -n "$mine" ] && [ -n "$(echo "$mine" | cut -d, -f5 | tr -d ' ')" ]; then
    id=${{mine%%,*}}
    say "the data directory is empty but the cluster lists $PGHA_ETCD_NAME as member $id, which has run:"\\
      "removing that identity to join anew"
    change remove "$id"
    mine=""
  fi
  # The same name at another peer URL: this member's identity before its host moved to a new address.
  moved=$(ctl member list | awk -F', ' -v url="$PGHA_ETCD_PEER_URL" -v me="$PGHA_ETCD_NAME" '$3 == me && $4 != url')
  if [ -n "$moved" ]; then
    say "the cluster lists $PGHA_ETCD_NAME at $(echo "$moved" | cut -d, -f4 | tr -d ' '), another address:" \\
      "removing that identity (the member moved)"
    change remove "${{moved%%,*}}"
  fi
  if [ -z "$mine" ]; then
    say "joining the running cluster as a learner"
    change add "$PGHA_ETCD_NAME" --peer-urls="$PGHA_ETCD_PEER_URL" --learner
  else
    say "the running cluster lists this member already: joining it"
  fi
  cluster=$(ctl member list | awk -F', ' -v url="$PGHA_ETCD_PEER_URL" -v me="$PGHA_ETCD_NAME" '
    {{ name = ($4 == url) ? me : $3
      if (name == "") {{ print "member " $1 " (" $4 ") was added but never started: remove it first" \\
                           > "/dev/stderr"; exit 1 }}
      printf "%s%s=%s", sep, name, $4; sep = "," }}')
fi
say "starting with initial-cluster-state $state: $cluster"
echo "$PGHA_ETCD_PEER_URL" > {marker}
{{ cat {ETCD_CONFIG}
  printf 'initial-cluster: %s\\ninitial-cluster-state: %s\\n' "$cluster" "$state"
  printf 'initial-cluster-token: %s\\n' "$PGHA_ETCD_TOKEN"
}} > {start}
exec /usr/bin/etcd --config-file {start}
""")


def render_etcd_health(cfg: ClusterConfig) -> str:
    """The member's health check: it serves linearizable reads. A learner is promoted first, which etcd
    allows only once it has caught up with the leader; until then it is not healthy."""
    local = client_url(cfg, "127.0.0.1")
    return with_header(f"""#!/bin/bash
set -uo pipefail
. {ETCD_CLUSTER_ENV}
status=$({ETCDCTL} --endpoints={local} endpoint status) || exit 1
# endpoint, ID, version, db size, is leader, is learner, ...
if [ "$(echo "$status" | awk -F', ' '{{print $6}}')" = true ]; then
  id=$(echo "$status" | awk -F', ' '{{print $2}}')
  {ETCDCTL} --endpoints="$PGHA_ETCD_OTHERS" member promote "$id" || exit 1
fi
exec {ETCDCTL} --endpoints={local} endpoint health
""")
