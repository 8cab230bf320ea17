"""A rolling upgrade of the PostgreSQL nodes (a new node image on docker): pre-checks, then one node at a time,
the leader last after a switchover.

- The pre-check runs on the leader before any container is touched (only for a new image: a change of
  its own settings checks nothing), and refuses the upgrade, naming what stands in the way, while a member
  is not streaming or lags more than the maximum_lag_on_failover Patroni applies,
  or a transaction on the leader is older than `pgha:upgrade.max_transaction_s` (the switchover would end
  it). A refused upgrade replaces nothing; the next deployment checks again.
- The nodes are replaced in the rolling order (the replicas, then the leader: targets know the leader of
  a running cluster), each after the one before is back and healthy.
- Before its container is replaced, a node that leads hands over: `patronictl switchover` to the
  synchronous standby (any streaming replica without synchronous replication), waiting until that one
  leads, then until every HAProxy's checks must have marked it down (`drain_seconds`): stopped before
  that, it would still get new read-write connections. A replica has nothing to hand over.
"""

from __future__ import annotations

from config.models import ClusterConfig
from render import paths
from render.haproxy import READ_ONLY, READ_WRITE
from render.shell import python_rest_open

LEADER_ROLES = ("leader", "standby_leader")

PRECHECK = r"""
import json, subprocess, sys, urllib.request

max_xact = int(sys.argv[1])
{rest_open}
with rest_open("/config") as response:
    max_lag = int(json.load(response).get("maximum_lag_on_failover", 1048576))  # what Patroni applies now
with rest_open("/cluster") as response:
    members = json.load(response)["members"]
problems = []
for m in members:
    if m["role"] in {leader_roles}:
        continue
    lag = m.get("lag")
    if m.get("state") != "streaming":
        problems.append(f"{{m['name']}} is {{m.get('state')}}, not streaming")
    elif not isinstance(lag, int) or lag > max_lag:
        problems.append(f"{{m['name']}} lags {{lag}} bytes (at most {{max_lag}})")
sql = ("SELECT pid, usename, application_name, extract(epoch FROM now() - xact_start)::int FROM pg_stat_activity "
       f"WHERE backend_type = 'client backend' AND xact_start < now() - interval '{{max_xact}} seconds' "
       "AND pid <> pg_backend_pid()")
rows = subprocess.run(["runuser", "-u", "postgres", "--", "{psql}", "-XtA", "-F", " ", "-c", sql],
                      capture_output=True, text=True, check=True).stdout.split("\n")
for row in filter(None, rows):
    pid, user, app, age = row.split(" ", 3)
    problems.append(f"transaction of pid {{pid}} (user {{user}}, application '{{app}}') open for {{age}} s "
                    f"(at most {{max_xact}} s): a switchover would end it")
if problems:
    sys.exit("pgha-upgrade: refused before any node is touched: " + "; ".join(problems)
             + ". Fix that, then run the deployment again.")
print(f"pgha-upgrade: pre-checks passed: {{len(members)}} members, every replica streaming within {{max_lag}} bytes, "
      f"no transaction older than {{max_xact}} s")
"""

HANDOVER = r"""
import json, subprocess, sys, time, urllib.request

me, conf = sys.argv[1], sys.argv[2]


{rest_open}

def members():
    with rest_open("/cluster") as response:
        return {{m["name"]: m for m in json.load(response)["members"]}}


with rest_open("/config") as response:
    synchronous = json.load(response).get("synchronous_mode") not in (None, False, "off")
# Patroni switches over only to its synchronous standby when one is required: right after another member
# came back (the one replaced before this one), no member may hold that role yet. Wait for one.
settle = time.monotonic() + 60
while True:
    current = members()
    if current.get(me, {{}}).get("role") not in {leader_roles}:
        print(f"pgha-handover: {{me}} is not the leader: nothing to hand over")
        sys.exit(0)
    streaming = [m for m in current.values() if m["name"] != me and m.get("state") == "streaming"]
    sync = [m for m in streaming if m["role"] in ("sync_standby", "quorum_standby")]
    if sync or not synchronous or time.monotonic() > settle:
        break
    print("pgha-handover: waiting for a synchronous standby to switch over to", flush=True)
    time.sleep(1)
candidates = sorted(sync or streaming, key=lambda m: m.get("lag") if isinstance(m.get("lag"), int) else 1 << 62)
if not candidates:
    sys.exit(f"pgha-handover: {{me}} leads and no replica streams: nothing to switch over to")
target = candidates[0]["name"]
print(f"pgha-handover: {{me}} leads: switchover to {{target}}", flush=True)
subprocess.run(["runuser", "-u", "postgres", "--", "patronictl", "-c", conf, "switchover", "--leader", me,
                "--candidate", target, "--force"], check=True)
deadline = time.monotonic() + 120
while time.monotonic() < deadline:
    try:
        now = members()
        if now.get(target, {{}}).get("role") in {leader_roles} and now.get(me, {{}}).get("role") not in {leader_roles}:
            break
    except Exception as error:
        print(f"pgha-handover: waiting for {{target}} to lead: {{error}}", flush=True)
    time.sleep(1)
else:
    sys.exit(f"pgha-handover: {{target}} did not take over from {{me}} within 120 s")
# HAProxy learns of the new leader by its checks of /primary alone: until it has marked this node down, it
# still sends new read-write connections here, and once this node is stopped (a removed container no longer
# answers at all) those wait for its connect timeout. This node keeps answering 503 meanwhile.
drain_end = time.monotonic() + {drain_s}
while time.monotonic() < drain_end:
    try:
        rest_open("/primary", 2).close()
        sys.exit(f"pgha-handover: {{me}} answers /primary again after the switchover to {{target}}: stopped")
    except OSError:  # 503 (an HTTPError), or no answer: a failed check either way
        pass
    time.sleep(0.2)
print(f"pgha-handover: {{target}} leads; HAProxy's checks have marked {{me}} down ({drain_s} s)")
"""


def render_precheck(cfg: ClusterConfig) -> str:
    """Bash, run on the leader: the upgrade's pre-checks (exit 1 with the reasons when they fail)."""
    script = PRECHECK.format(rest_open=python_rest_open(cfg.patroni.rest_api_port), leader_roles=repr(LEADER_ROLES),
                             psql=f"{paths.PG_BIN}/psql")
    return f"set -euo pipefail\npython3 - {cfg.upgrade.max_transaction_s} <<'PGHA_PY'\n{script}PGHA_PY\n"


def drain_seconds(cfg: ClusterConfig) -> float:
    """How long after a node's /primary turns 503 every HAProxy has marked it down: the next check comes
    within `inter`, the `fall - 1` after it every `fastinter` (a server that failed once is checked at that
    rate), plus half a second for the checks' own time."""
    check = cfg.haproxy.check
    return (check.inter_ms + (check.fall - 1) * check.fastinter_ms) / 1000 + 0.5


def render_handover(cfg: ClusterConfig, node: str) -> str:
    """Bash, run on PostgreSQL node `node` before it is replaced: a switchover away from it when it leads."""
    script = HANDOVER.format(rest_open=python_rest_open(cfg.patroni.rest_api_port), leader_roles=repr(LEADER_ROLES),
                             drain_s=drain_seconds(cfg))
    return f"set -euo pipefail\npython3 - {node} {paths.PATRONI_CONFIG} <<'PGHA_PY'\n{script}PGHA_PY\n"


# How long a released node stays out of the VRRP group (VIP_RELEASE), and how long its peer may take the
# address: keepalived's check fails twice a second apart, then the peer takes over on the priority-0 advert.
VIP_RELEASE_S = 60
VIP_MOVE_S = 30


def render_vip_handover(cfg: ClusterConfig, node: str) -> str:
    """Bash, run on HAProxy node `node` before it is replaced or leaves: when it holds the virtual IP, it pauses
    its SQL listeners (new connections are refused at once), ends every session through them while it still
    answers on the address, then gives the address up (its keepalived check fails for VIP_RELEASE_S) and waits
    until another node answers on it.

    The order matters: an answer this node owes a client when the address leaves cannot be sent any more (the
    address is no longer its own), and the client, waiting for it, sends nothing the new holder could reset: it
    waits for ever (or for its TCP keepalive). Ended first, each client sees its connection close and dials
    again, reaching the new holder once the address has moved. Refuses, and takes its part back (listeners
    resumed), when no peer took the address."""
    ha = cfg.haproxy
    if ha.virtual_ip is None:
        raise ValueError("haproxy.virtual_ip: missing; only a node that may hold a virtual IP hands one over")
    vip, port = str(ha.virtual_ip), ha.read_write_port
    listeners = (READ_WRITE, READ_ONLY)
    pause = "\n".join(f'  admin "disable frontend {name}" >/dev/null' for name in listeners)
    resume = "; ".join(f'admin "enable frontend {name}" >/dev/null 2>&1 || true' for name in listeners)
    owned = " || ".join(f'$4 == "fe={name}"' for name in listeners)
    return f"""set -euo pipefail
holds() {{ ip -o -4 addr show | grep -F ' {vip}/' >/dev/null; }}
admin() {{ printf '%s\\n' "$1" | socat stdio unix-connect:{paths.HAPROXY_SOCKET}; }}
if ! holds; then
  echo "pgha-handover: {node} does not hold the virtual IP {vip}: nothing to hand over"
  exit 0
fi
resume() {{ rm -f {paths.VIP_RELEASE}; {resume}; }}
trap 'resume; echo "pgha-handover: failed; {node} resumed its listeners" >&2' ERR
if admin "show info" >/dev/null 2>&1; then
{pause}
  ended=0
  for session in $(admin "show sess" | awk '{owned} {{ sub(/:$/, "", $1); print $1 }}'); do
    admin "shutdown session $session" >/dev/null
    ended=$((ended + 1))
  done
  echo "pgha-handover: {node} paused its listeners and ended $ended client session(s)"
else
  echo "pgha-handover: HAProxy on {node} does not answer on its admin socket: no session to end"
fi
echo "$(( $(date +%s) + {VIP_RELEASE_S} ))" > {paths.VIP_RELEASE}
deadline=$((SECONDS + {VIP_MOVE_S}))
until ! holds && timeout 1 bash -c 'exec 3<>/dev/tcp/{vip}/{port}' 2>/dev/null; do
  if [ $SECONDS -ge $deadline ]; then
    trap - ERR
    resume
    echo "pgha-handover: no other HAProxy node took the virtual IP {vip} within {VIP_MOVE_S} s (is one running and \\
healthy?); {node} takes it back and is not replaced" >&2
    exit 1
  fi
  sleep 0.2
done
echo "pgha-handover: {node} handed the virtual IP {vip} to another HAProxy node"
"""
