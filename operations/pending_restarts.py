"""Pending restarts: PostgreSQL parameters that need a restart reach every node, replicas first.

Patroni applies a changed parameter by reload where PostgreSQL allows it; a parameter of context
`postmaster` (shared_buffers, max_connections, ...) only marks the member `pending_restart`. After a
configuration change this step, run once on one PostgreSQL host after every node converged:

1. waits until the DCS holds the stack's dynamic configuration (pgha-dcs-sync writes it),
2. gives every Patroni two loops to apply it (Patroni re-reads the DCS once per loop_wait),
3. restarts the pending members one at a time with `patronictl restart --pending`: replicas first,
   each back and streaming before the next, the leader last (in place: Patroni keeps the leader key,
   so no failover happens; writes pause for the length of one PostgreSQL restart).

It is idempotent and runs again whenever the dynamic configuration changes: its digest is the step's
trigger, so a change replaces the step and the new one runs (the old one has nothing to delete). A
failed run (e.g. a member that does not come back) fails the deployment and the next run retries. It
runs on both targets: on docker a changed parameter replaces the containers today, so it usually
finds nothing pending there.
"""

from __future__ import annotations

import hashlib

import pulumi

from config.models import ClusterConfig
from render import paths
from render.patroni import render_dynamic_config
from render.shell import HEALTH_DEADLINE_S, rest_url, step_script, until_ok
from targets.base import Target

DEADLINE_S = HEALTH_DEADLINE_S - 20  # the script's own waits end before the step's deadline

SCRIPT = r"""
import json, ssl, subprocess, sys, time, urllib.request
import yaml

conf, desired_file, api = sys.argv[1:4]
loop_wait, deadline, ca = int(sys.argv[4]), time.monotonic() + int(sys.argv[5]), sys.argv[6]


def log(text):
    print(f"pgha-pending-restarts: {text}", flush=True)


def patronictl(*args):
    return subprocess.run(["patronictl", "-c", conf, *args], capture_output=True, text=True, check=True).stdout


def members():
    with urllib.request.urlopen(f"{api}/cluster", timeout=5, context=ssl.create_default_context(cafile=ca)) as response:
        return {m["name"]: m for m in json.load(response)["members"]}


def settled(m):
    return m.get("state") in ("running", "streaming")


def wait(what, check):
    while True:
        try:
            if check():
                return
        except Exception as error:
            log(f"waiting for {what}: {error}")
        if time.monotonic() > deadline:
            sys.exit(f"pgha-pending-restarts: gave up waiting for {what}")
        time.sleep(1)


with open(desired_file) as f:
    desired = yaml.safe_load(f)
wait("the DCS to hold " + desired_file, lambda: yaml.safe_load(patronictl("show-config")) == desired)
time.sleep(2 * loop_wait + 3)  # every Patroni applies the DCS configuration within one loop
while True:
    wait("every member running", lambda: all(settled(m) for m in members().values()))
    current = members()
    pending = [m for m in current.values() if m.get("pending_restart")]
    if not pending:
        log("no restart pending")
        break
    replicas = [m for m in pending if m["role"] not in ("leader", "standby_leader")]
    member = (replicas or pending)[0]
    reason = ", ".join(sorted(member.get("pending_restart_reason") or {})) or "pending restart"
    log(f"restarting {member['name']} ({member['role']}): {reason}")
    scope = yaml.safe_load(open(conf))["scope"]
    patronictl("restart", scope, member["name"], "--pending", "--force")
    wait(f"{member['name']} back", lambda: (m := members().get(member["name"])) and settled(m)
         and not m.get("pending_restart"))
"""


def apply_pending_restarts(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
                           parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the pending-restart step on the first PostgreSQL node, after `depends_on`."""
    digest = hashlib.sha256(render_dynamic_config(cfg).encode()).hexdigest()[:16]
    # After every node converged: each Patroni serves HTTPS.
    api = rest_url("127.0.0.1", cfg.patroni.rest_api_port)
    check = ("python3", "-c", SCRIPT, paths.PATRONI_CONFIG, paths.DCS_CONFIG, api, str(cfg.patroni.loop_wait),
             str(DEADLINE_S), paths.PG_TLS_CA)
    return target.run_step(name, cfg.postgres.nodes[0], step_script(until_ok(check)), depends_on, parent,
                           triggers=[f"dynamic-config={digest}"])
