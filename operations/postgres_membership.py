"""PostgreSQL nodes leaving a running cluster, and the check that the cluster forgot them.

Who leaves is read from the running cluster (Patroni's /cluster, in the stack's own DCS namespace, which is
generated per stack: every member in it is one of this stack's nodes) when the program runs: the members
the stack no longer configures. Each leaves by a step on its own host, one after another, the leader last,
and all of them before any node that stays takes the new configuration (its pg_hba no longer admits them):

1. a leader switches over first (operations/upgrade.py's handover: to the synchronous standby, then until
   every HAProxy has marked it down for writes);
2. its Patroni takes the tags `nofailover`, `nosync` and `noloadbalance` (a reload): it is no failover
   candidate, the leader moves the synchronous role to another member, and /replica answers 503, so the
   HAProxy checks take it out of the read-only pool;
3. once another member holds the synchronous role and every HAProxy must have marked it down, its service
   stops for good (the target's `retire`); its resources, and its data by the stack's setting, go with
   the resources no longer declared, at the end of the deployment.

`*-postgres-membership` then waits, on a node that stays, until the cluster lists only configured members
(a stopped member's key expires after ttl), then until the leader holds no replication slot of a member
that left: Patroni keeps the slot of an absent member for `patroni.member_slots_ttl`, so for that moment the
step sets it to 0 and back.
"""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig, Host
from operations.upgrade import drain_seconds, render_handover
from render import paths
from render.credentials import REWIND_USER
from render.shell import local_rest, python_rest_open
from targets.base import Member, Process, Target

TAGS = ("nofailover", "nosync", "noloadbalance")
SYNC_ROLES = ("sync_standby", "quorum_standby")
STOPPED = ("stopped", "crashed")


def slot_name(member: str) -> str:
    """The physical replication slot Patroni keeps for a member (its name, lower case, [a-z0-9_] only)."""
    return "".join(c if c.isalnum() or c == "_" else "_" for c in member.lower())[:63]


def leaving(cfg: ClusterConfig, members: list[Member] | None) -> list[Member]:
    """The members of the running cluster the stack no longer configures (or configures at another address),
    in the order they leave: the replicas first, the leader last (by then the synchronous role is on a
    member that stays)."""
    configured = {n.name: str(n.address) for n in cfg.postgres.nodes}
    # A member that stopped (its key stays until its lease ends) has no role left to move. A member listed at
    # another address than its configured one moves: it leaves from the old one and joins at the new one.
    gone = [m for m in members or [] if configured.get(m.name) != m.address and m.state not in STOPPED]
    return [m for m in gone if not m.leads] + [m for m in gone if m.leads]


def running(members: list[Member] | None) -> list[str] | None:
    """The names of the members that run (not stopped or crashed); None when no cluster answered."""
    return None if members is None else [m.name for m in members if m.state not in STOPPED]


def joining(cfg: ClusterConfig, members: list[Member] | None) -> list[Host]:
    """The configured nodes the running cluster does not list yet, or lists at another address (none when no
    cluster answers): a node that is new, rebuilt empty, or moved."""
    if members is None:
        return []
    listed = {(m.name, m.address) for m in members}
    return [n for n in cfg.postgres.nodes if (n.name, str(n.address)) not in listed]


TAG = r"""
import json, os, subprocess, sys, tempfile, time, urllib.error, urllib.request
import yaml

me, conf, scope, drain_s, synchronous = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), sys.argv[5] == "1"
tags = {tags}


{rest_open}

def get(path):
    with rest_open(path) as response:
        return json.load(response)


with open(conf) as f:
    settings = yaml.safe_load(f)
if any(settings.get("tags", {{}}).get(t) is not True for t in tags):
    settings["tags"] = {{**settings.get("tags", {{}}), **dict.fromkeys(tags, True)}}
    st = os.stat(conf)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(conf))
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(settings, f, default_flow_style=False, sort_keys=False)
    os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, 0o600)
    os.replace(tmp, conf)
subprocess.run(["runuser", "-u", "postgres", "--", "patronictl", "-c", conf, "reload", scope, me, "--force"],
               check=True, stdout=subprocess.DEVNULL)
deadline = time.monotonic() + 120
while True:
    members = {{m["name"]: m for m in get("/cluster")["members"]}}
    mine = members.get(me, {{}})
    taken = all(mine.get("tags", {{}}).get(t) is True for t in tags)
    others = [m for n, m in members.items() if n != me and m.get("role") in {sync_roles}]
    if taken and mine.get("role") not in {sync_roles} and (others or not synchronous):
        break
    if time.monotonic() > deadline:
        sys.exit(f"pgha-leave: {{me}} still holds a role after 120 s (tags applied: {{taken}}, role "
                 f"{{mine.get('role')}}, synchronous standbys elsewhere: {{[m['name'] for m in others]}})")
    time.sleep(0.5)
print(f"pgha-leave: {{me}} is tagged {{', '.join(tags)}}: no failover candidate, not synchronous"
      + (f" ({{', '.join(m['name'] for m in others)}} is)" if others else ""), flush=True)
# /replica answers 503 now (noloadbalance): once every HAProxy's checks must have seen it, no new read-only
# connection comes here, and the ones that were here were ended when the server was marked down.
end = time.monotonic() + drain_s
while time.monotonic() < end:
    try:
        rest_open("/replica", 2).close()
        sys.exit(f"pgha-leave: {{me}} still answers /replica with 200 after its tags were applied")
    except urllib.error.HTTPError:
        pass
    time.sleep(0.2)
print(f"pgha-leave: every HAProxy has taken {{me}} out of its pools ({{drain_s}} s): it stops", flush=True)
"""


def render_leave(cfg: ClusterConfig, member: str) -> str:
    """Bash, run as root on the host of `member`, which leaves: hand the leadership over when it leads, take
    the tags that move every role off it, wait until HAProxy drained it. Re-run on a stopped member, it
    does nothing (the member left already)."""
    api = cfg.patroni.rest_api_port
    synchronous = "0" if cfg.patroni.synchronous_mode == "off" else "1"
    tag = TAG.format(rest_open=python_rest_open(api), tags=repr(TAGS), sync_roles=repr(SYNC_ROLES))
    return f"""set -euo pipefail
if {local_rest(api, "/", "-s -o /dev/null --max-time 3")}; then
{render_handover(cfg, member).removeprefix("set -euo pipefail").strip()}
python3 - {member} {paths.PATRONI_CONFIG} {cfg.name} {drain_seconds(cfg)} {synchronous} <<'PGHA_PY'
{tag}PGHA_PY
else
  echo "pgha-leave: {member}: Patroni does not answer: it left already"
fi
"""


FORGET = r"""
import json, subprocess, sys, time, urllib.request
import psycopg2, yaml

configured, kept_slots = set(sys.argv[1].split(",")), set(sys.argv[2].split(","))
retention = int(sys.argv[3])  # patroni.member_slots_ttl
deadline = time.monotonic() + {deadline_s}


{rest_open}

def members():
    with rest_open("/cluster") as response:
        return json.load(response)["members"]


while True:
    extra = sorted(m["name"] for m in members() if m["name"] not in configured)
    if not extra:
        break
    if time.monotonic() > deadline:
        sys.exit(f"pgha-membership: Patroni still lists {{', '.join(extra)}} after {deadline_s} s; their member keys "
                 "expire ttl after they stop: is one of them still running?")
    time.sleep(1)
print(f"pgha-membership: the cluster lists only configured members ({{len(configured)}})", flush=True)
with open("{conf}") as f:
    # pg_hba admits the rewind role from the members (the superuser only over the local socket), and any role
    # reads pg_replication_slots.
    password = yaml.safe_load(f)["postgresql"]["authentication"]["rewind"]["password"]


def leader_and_stale():
    leader = next((m for m in members() if m["role"] == "leader" and m["state"] == "running"), None)
    if leader is None:
        return None, None
    try:
        with psycopg2.connect(host=leader["host"], port={port}, user="{rewind}", password=password,
                              dbname="postgres", sslmode="verify-full", sslrootcert="{ca}",
                              connect_timeout=5) as conn, conn.cursor() as cur:
            cur.execute("SELECT slot_name FROM pg_replication_slots WHERE slot_type = 'physical'")
            return leader, sorted({{row[0] for row in cur.fetchall()}} - kept_slots)
    except psycopg2.Error as error:
        print(f"pgha-membership: asking the leader for its slots: {{error}}".strip(), flush=True)
        return leader, None


def retain(seconds):
    subprocess.run(["runuser", "-u", "postgres", "--", "patronictl", "-c", "{conf}", "edit-config", "--quiet",
                    "--force", "--set", f"member_slots_ttl={{seconds}}"], check=True, stdout=subprocess.DEVNULL)


# The leader keeps the slot of a member that is gone for member_slots_ttl (a replica that comes back resumes
# from it). For the members that left for good that retention is held off: 0 for as long as the leader needs
# to drop their slots (its next loop), then the configured value again (pgha-dcs-sync restores it too).
leader, stale = leader_and_stale()
lowered = False
try:
    while stale != []:
        if stale and retention and not lowered:
            print(f"pgha-membership: dropping the slots {{', '.join(stale)}} of members that left", flush=True)
            retain(0)
            lowered = True
        if time.monotonic() > deadline:
            sys.exit(f"pgha-membership: the leader still holds the replication slots {{stale}} of members that left")
        time.sleep(1)
        leader, stale = leader_and_stale()
finally:
    if lowered:
        retain(retention)
print(f"pgha-membership: the leader ({{leader['name']}}) holds no slot of a member that left", flush=True)
"""


def render_forget(cfg: ClusterConfig) -> str:
    """Bash, run as root on a configured node once every node converged: wait until Patroni lists only the
    configured members, then until the leader holds no slot of another member (the retention of absent
    members' slots held off for that moment)."""
    patroni = cfg.patroni
    # A member that stopped keeps its key until its lease ends (ttl); the leader drops its slot at its next
    # loop after that. A minute on top for a loaded cluster.
    deadline = patroni.ttl + 2 * patroni.loop_wait + 60
    names = ",".join(n.name for n in cfg.postgres.nodes)
    script = FORGET.format(rest_open=python_rest_open(patroni.rest_api_port), deadline_s=deadline,
                           conf=paths.PATRONI_CONFIG,
                           port=cfg.postgres.port, rewind=REWIND_USER, ca=paths.PG_TLS_CA)
    slots = ",".join(slot_name(n.name) for n in cfg.postgres.nodes)
    return (f"set -euo pipefail\npython3 - {names} {slots} {patroni.member_slots_ttl} <<'PGHA_PY'\n"
            f"{script}PGHA_PY\n")


def leave(name: str, cfg: ClusterConfig, target: Target, members: list[Member], processes: tuple[Process, ...],
          depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> list[pulumi.Resource]:
    """Declare a leave step per member that leaves, one after another in the given order; `processes` are
    those of a PostgreSQL node's service, stopped at the end of each."""
    steps: list[pulumi.Resource] = []
    for member in members:
        host = Host.model_validate({"name": member.name, "address": member.address})
        steps.append(target.retire(f"{name}-{member.name}-leave", host, render_leave(cfg, member.name), processes,
                                   [*depends_on, *steps[-1:]], parent))
    return steps


def forget(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
           parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the check, on the first configured node, that the cluster forgot every member that left. It
    runs again whenever the configured nodes change."""
    return target.run_step(name, cfg.postgres.nodes[0], render_forget(cfg), depends_on, parent)
