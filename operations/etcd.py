"""Day-2 steps on the etcd cluster: wait until every configured member is healthy, so Patroni starts against a
store with a quorum; and, once Patroni uses only the configured members, remove the members the stack no
longer has, one at a time (`member remove` before the member is stopped: its resources go last)."""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig
from render.etcd import ETCDCTL, client_url, peer_url
from render.shell import step_script, until_ok
from targets.base import Target


def endpoints(cfg: ClusterConfig) -> list[str]:
    """Every member's client URL."""
    return [client_url(cfg, m.address) for m in cfg.etcd.members]


def wait_healthy(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the step on the first member: `etcdctl endpoint health` of every member succeeds."""
    check = ("etcdctl", f"--endpoints={','.join(endpoints(cfg))}", "endpoint", "health")
    return target.run_step(name, cfg.etcd.members[0], step_script(until_ok(check)), depends_on, parent)


def render_prune(cfg: ClusterConfig) -> str:
    """Bash (no secrets) that removes from the etcd cluster every member whose peer URL is not a configured
    member's, one at a time: each removal only while every configured member is healthy, and the next one
    only once they are healthy again. It refuses to remove a majority of the members it finds."""
    configured = " ".join(peer_url(cfg, m) for m in cfg.etcd.members)
    every = ",".join(endpoints(cfg))
    healthy = until_ok(("etcdctl", f"--endpoints={every}", "endpoint", "health"), 120)
    return step_script(f"""ctl() {{ {ETCDCTL} --endpoints={every} "$@"; }}
configured=" {configured} "
listed=$(ctl member list)
total=$(echo "$listed" | grep -c . || true)
leaving=$(echo "$listed" | awk -F', ' -v keep="$configured" 'index(keep, " " $4 " ") == 0 {{print $1 "," $3 "," $4}}')
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
