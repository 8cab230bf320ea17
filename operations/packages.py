"""Pinned package versions on hosts (the ssh target's pgha:ssh.packages): a changed pin reaches one host at
a time, as a rolling upgrade.

- Before the first PostgreSQL host is touched, a pre-check runs on every PostgreSQL host (the leader checks
  replication lag and long transactions, as for a new image on docker: operations/upgrade.py; the others
  that a leader runs) and refuses, naming the reason, before any package changes. It runs again only when
  the PostgreSQL hosts' pins change.
- Each host then, in the rolling order (PostgreSQL: the replicas, the leader last; etcd and HAProxy: one
  member after the other, each after the one before is healthy): checks that every pinned version is
  offered by its package sources (else nothing changes and it says which versions are), hands over when it
  leads and a process it runs must restart, installs the pinned versions (an upgrade or a downgrade), and
  restarts (or, where the process re-executes its binary on its reload signal, reloads) only the processes
  whose packages changed, then waits for the service's health.
- Packages nobody pinned are installed at the version the hosts' sources offer and never upgraded by a
  deployment.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from config.models import ClusterConfig
from operations.upgrade import render_precheck
from render.shell import has_running_leader, local_rest, until_ok
from targets.base import ServiceSpec
from targets.converge import Control

# What keeps Debian's packaged services from starting while apt runs (pgha runs its own units).
NO_PACKAGED_STARTS = ("printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 0755 /usr/sbin/policy-rc.d\n"
                      "trap 'rm -f /usr/sbin/policy-rc.d' EXIT\n")
APT_INSTALL = ("apt-get install -y -qq --no-install-recommends "
               "-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold")


def pinned(packages: tuple[str, ...], pins: Mapping[str, str]) -> list[str]:
    """apt-get install arguments: NAME=VERSION where pinned, NAME otherwise."""
    return [f"{p}={pins[p]}" if p in pins else p for p in packages]


def render_upgrade(spec: ServiceSpec, pins: Mapping[str, str], control: Control) -> str:
    """Bash, run as root on `spec`'s host: bring the pinned packages to their versions (see the module)."""
    host = spec.host.name
    wanted = " ".join(shlex.quote(f"{n}={v}") for n, v in pins.items())
    parts = [
        "set -euo pipefail",
        "export DEBIAN_FRONTEND=noninteractive",
        f'log() {{ echo "pgha-packages: {host}: $*"; }}',
        "changed=()",
        f"for pin in {wanted}; do",
        '  name=${pin%%=*} version=${pin#*=}',
        "  current=$(dpkg-query -W -f='${Version}' \"$name\" 2>/dev/null || true)",
        '  if [ "$current" != "$version" ]; then',
        '    changed+=("$name"); log "$name ${current:-(not installed)} -> $version"',
        "  fi",
        "done",
        f'if [ ${{#changed[@]}} -eq 0 ]; then log "as pinned: "{wanted}; exit 0; fi',
        "apt-get update -qq",
        "offered() { apt-cache madison \"$1\" | awk -F'|' '{gsub(/ /, \"\", $2); print $2}'; }",
        f"for pin in {wanted}; do",
        '  name=${pin%%=*} version=${pin#*=}',
        '  if ! offered "$name" | grep -qxF -- "$version"; then',
        f'    echo "pgha-packages: {host}: ssh.packages.$name: version $version is not offered by this host\'s '
        'package sources (offered: $(offered "$name" | paste -sd, -)); nothing was changed" >&2',
        "    exit 1",
        "  fi",
        "done",
        'touched() { local c p; for c in "${changed[@]}"; do for p in "$@"; do [ "$c" = "$p" ] && return 0; done; '
        "done; return 1; }",
    ]
    restarting = sorted({p for proc in spec.processes if proc.upgrade == "restart" for p in proc.packages})
    if spec.handover is not None and restarting:
        parts.append(f"if touched {' '.join(restarting)}; then\n{spec.handover.rstrip()}\nfi")
    parts += [NO_PACKAGED_STARTS.rstrip(), f"{APT_INSTALL} --allow-downgrades {wanted} >/dev/null", "acted=0"]
    for process in spec.processes:
        if not process.packages:
            continue
        prepare = f"{process.before_change}\n  " if process.before_change and process.upgrade == "reload" else ""
        parts.append(
            f"if touched {' '.join(process.packages)} && {control.running(process)}; then\n"
            f"  {prepare}{control.act(process, process.upgrade)}\n"
            f'  log "{process.name}: {process.upgrade}ed for its new packages"\n  acted=1\nfi')
    if spec.health:
        # Only what was running is waited for (a service not started yet is the converge's to start).
        parts.append(f'if [ "$acted" = 1 ]; then\n{until_ok(spec.health)}fi')
    return "\n".join(parts) + "\n"


def render_gate(cfg: ClusterConfig, pins: Mapping[str, str]) -> str:
    """Bash, run on every PostgreSQL host before any of them changes packages: the leader's pre-checks;
    elsewhere a check that the cluster has a running leader; nothing where no Patroni runs yet."""
    api = cfg.patroni.rest_api_port
    wanted = " ".join(f"{n}={v}" for n, v in pins.items())
    leaderless = ("pgha-upgrade: refused before any node is touched: the cluster has no running leader "
                  "(Patroni's /cluster on this node)")
    return f"""set -euo pipefail
# pgha-packages: {wanted}
if ! {local_rest(api, "/", "-s -o /dev/null --max-time 3")}; then
  echo "pgha-upgrade: no Patroni runs here yet: nothing to check"
  exit 0
fi
if {local_rest(api, "/primary", "-sf -o /dev/null --max-time 3")}; then
{render_precheck(cfg)}else
  {has_running_leader(api)} || {{ echo {shlex.quote(leaderless)} >&2; exit 1; }}
  echo "pgha-upgrade: not the leader: the leader checks"
fi
"""
