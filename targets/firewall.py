"""The ssh target's host firewall step: load the host's ruleset (render/firewall.py) before its services listen,
keep it across reboots, and remove it with the last service on the host that holds a claim on it."""

from __future__ import annotations

import shlex
from ipaddress import IPv4Network, IPv6Network

from config.models import ClusterConfig, Host
from render.firewall import render_firewall, render_firewall_additions, render_firewall_unit, settings, ssh_ports
from render.paths import FIREWALL_CLAIMS, FIREWALL_LOCK, FIREWALL_RULESET, FIREWALL_TABLE, FIREWALL_UNIT
from targets.converge import write_file

UNIT_PATH = f"/etc/systemd/system/{FIREWALL_UNIT}"
LOCK = f"exec 9>{FIREWALL_LOCK}\nflock -w 120 9\n"  # services sharing a host take turns


def ssh_check(cfg: ClusterConfig) -> str:
    """Bash that refuses (exit 1) when the connection this script came through ($SSH_CONNECTION: client address,
    client port, server address, server port) would not be let in again by the new SSH rule: the deployment's
    next command opens a new connection. Not over SSH (no $SSH_CONNECTION): nothing to lock out."""
    fw = settings(cfg)
    ports = ssh_ports(cfg)
    v4 = [n for n in fw.ssh_from if isinstance(n, IPv4Network)]
    v6_any = any(isinstance(n, IPv6Network) and n.prefixlen == 0 for n in fw.ssh_from)
    tests = " || ".join(f"(( (n & {int(n.netmask)}) == {int(n.network_address)} ))" for n in v4) or "false"
    allowed = ", ".join(str(n) for n in fw.ssh_from)
    refusal = (f"pgha-firewall: this deployment connects from $client to port $port, which the new ruleset would "
               f"not let in (pgha:firewall.ssh_from: {allowed}; ssh ports: {' '.join(map(str, ports))}): refusing "
               "to load it; add that address and port, or set pgha:firewall.enabled: false")
    v6 = "true" if v6_any else "false  # an IPv6 client is checked against ::/0 only"
    return f"""ssh_allowed() {{
  case " {' '.join(map(str, ports))} " in *" $2 "*) ;; *) return 1 ;; esac
  local a=${{1#::ffff:}} n
  if [[ $a =~ ^([0-9]+)\\.([0-9]+)\\.([0-9]+)\\.([0-9]+)$ ]]; then
    n=$(( (BASH_REMATCH[1] << 24) + (BASH_REMATCH[2] << 16) + (BASH_REMATCH[3] << 8) + BASH_REMATCH[4] ))
    {tests}
    return
  fi
  {v6}
}}
if [ -n "${{SSH_CONNECTION:-}}" ]; then
  read -r client _ _ port <<<"$SSH_CONNECTION"
  if ! ssh_allowed "$client" "$port"; then
    echo "{refusal}" >&2
    exit 1
  fi
fi
"""


def firewall_script(cfg: ClusterConfig, host: Host, claim: str) -> str:
    """The step of one service on `host` before it converges: refuse a ruleset that would lock the deployment
    out, check it with `nft -c`, enable the unit that loads it at boot and record the service's claim on it. A
    host without pgha's table loads it whole; one that has it only gains the new ruleset's accept rules (the
    sources and ports this deployment adds), so what the running cluster still uses (a member that leaves later
    in this deployment) stays open until `exact_script` loads the ruleset whole at the end."""
    ruleset, additions = render_firewall(cfg, host.address), render_firewall_additions(cfg, host.address)
    return "\n".join([
        "set -euo pipefail",
        LOCK + ssh_check(cfg),
        f"install -d -m 0755 {FIREWALL_CLAIMS}",
        "changed=0 unit_changed=0",
        write_file(FIREWALL_RULESET, ruleset, "0644", "root"),
        write_file(UNIT_PATH, render_firewall_unit(), "0644", "root", flag="unit_changed"),
        f"nft -c -f {FIREWALL_RULESET}",
        f"if ! nft list table {FIREWALL_TABLE} >/dev/null 2>&1; then\n"
        f"  nft -f {FIREWALL_RULESET}\n  echo 'pgha-firewall: loaded {FIREWALL_RULESET}'\n"
        'elif [ "$changed" = 1 ]; then\n'
        f"  nft -f - <<'PGHA_EOF'\n{additions}PGHA_EOF\n"
        "  echo 'pgha-firewall: opened what this deployment adds (the rest follows at its end)'\nfi",
        'if [ "$unit_changed" = 1 ]; then systemctl daemon-reload; fi',
        f"systemctl enable -q {FIREWALL_UNIT}",
        f"touch {shlex.quote(f'{FIREWALL_CLAIMS}/{claim}')}",
    ]) + "\n"


def exact_script(cfg: ClusterConfig, host: Host) -> str:
    """The step at the end of a deployment: the host's ruleset loaded whole (atomically), so what the stack no
    longer has (a member that left, a port that moved, a narrower ssh_from) is closed; the lockout check first."""
    ruleset = render_firewall(cfg, host.address)
    return "\n".join([
        "set -euo pipefail",
        LOCK + ssh_check(cfg),
        "changed=0",
        write_file(FIREWALL_RULESET, ruleset, "0644", "root"),
        f"nft -c -f {FIREWALL_RULESET}",
        f"nft -f {FIREWALL_RULESET}",
        f"echo 'pgha-firewall: {FIREWALL_RULESET} loaded whole'",
    ]) + "\n"


def removal_script(claim: str) -> str:
    """The step's delete: drop the service's claim; the last claim gone removes pgha's table, unit and files
    (the admin's tables and /etc/nftables.conf stay as they are)."""
    return f"""set -u
{LOCK}rm -f {shlex.quote(f'{FIREWALL_CLAIMS}/{claim}')}
if [ -n "$(ls -A {FIREWALL_CLAIMS} 2>/dev/null)" ]; then
  echo "pgha-firewall: kept for $(ls {FIREWALL_CLAIMS} | tr '\\n' ' ')"
  exit 0
fi
nft delete table {FIREWALL_TABLE} 2>/dev/null || true
systemctl disable --now -q {FIREWALL_UNIT} 2>/dev/null || true
rm -f {UNIT_PATH} {FIREWALL_RULESET}
rmdir {FIREWALL_CLAIMS} 2>/dev/null || true
systemctl daemon-reload
echo 'pgha-firewall: removed table {FIREWALL_TABLE}'
"""
