"""keepalived 2.3 configuration of one HAProxy node: unicast VRRP for the virtual IP, tracking haproxy."""

from __future__ import annotations

import re

from catalog import limits
from config.models import ClusterConfig, Host
from render.common import render_template, require_member, with_header
from render.credentials import Credentials
from render.haproxy import READ_WRITE, admin_command
from render.paths import HAPROXY_READY_SCRIPT, VIP_RELEASE

# VRRPv2 PASS authentication carries at most 8 characters; keepalived would truncate with a warning.
AUTH_PASS_LENGTH = limits.VRRP_PASS_LENGTH
# keepalived's tokenizer has no escaping: whitespace, quotes, '#', '!', braces and '$' would split a
# word, end the line or start a substitution; allow only what is plain everywhere.
_AUTH_PASS_SAFE = re.compile(r"^[A-Za-z0-9._+/=~-]+$")
TOP_PRIORITY = 200
# Seconds between the holder's repeated gratuitous ARPs (vrrp_garp_master_refresh): how long a client whose
# neighbour entry names another node keeps sending there.
GARP_REFRESH_S = 5
PRIORITY_STEP = 10


def auth_pass(creds: Credentials) -> str:
    """The VRRP PASS secret: the first 8 characters of creds.keepalived, which must be plain."""
    secret = creds.keepalived[:AUTH_PASS_LENGTH]
    if not _AUTH_PASS_SAFE.match(secret):
        raise ValueError(
            "credentials.keepalived: the first 8 characters must be letters, digits or one of ._+/=~- "
            "(keepalived.conf cannot escape anything else)"
        )
    return secret


def priority(cfg: ClusterConfig, node: Host) -> int:
    """VRRP priority of `node`: distinct and descending in the order of cfg.haproxy.nodes."""
    index = cfg.haproxy.nodes.index(node)
    value = TOP_PRIORITY - PRIORITY_STEP * index
    if value < 1:
        raise ValueError(
            f"haproxy.nodes: {len(cfg.haproxy.nodes)} given; at most "
            f"{(TOP_PRIORITY - 1) // PRIORITY_STEP + 1} nodes get distinct VRRP priorities"
        )
    return value


def render_keepalived(cfg: ClusterConfig, node: Host, creds: Credentials) -> str:
    """The keepalived.conf of HAProxy node `node`; ValueError when no virtual IP is configured."""
    ha = cfg.haproxy
    if ha.virtual_ip is None:
        raise ValueError("haproxy.virtual_ip: missing; keepalived is only rendered when a virtual IP is set")
    require_member(node, ha.nodes, "haproxy.nodes")
    text = render_template(
        "keepalived.conf.j2",
        router_id=node.name,
        garp_refresh=GARP_REFRESH_S,
        instance=f"pgha_{cfg.name.replace('-', '_')}",
        interface=ha.interface,
        virtual_router_id=cfg.virtual_router_id,
        priority=priority(cfg, node),
        ready_script=HAPROXY_READY_SCRIPT,
        src_ip=str(node.address),
        peers=[str(n.address) for n in ha.nodes if n != node],
        auth_pass=auth_pass(creds),
        virtual_ip=str(ha.virtual_ip),
    )
    return with_header(text)


def render_haproxy_ready() -> str:
    """keepalived's check script: HAProxy runs, its read-write listener is open, and it routes writes to at most
    one server. A freshly started HAProxy counts every server UP until its checks have run: it does not take
    the address before that. It fails while a handover releases the address (VIP_RELEASE holds a time still
    to come), and while a handover has paused the listeners (operations/upgrade.render_vip_handover)."""
    return with_header(f"""#!/bin/bash
set -uo pipefail
if [ -s {VIP_RELEASE} ] && [ "$(date +%s)" -lt "$(cat {VIP_RELEASE})" ]; then exit 1; fi
pgrep -x haproxy >/dev/null || exit 1
stat=$({admin_command("show stat")} 2>/dev/null) || exit 1
echo "$stat" | awk -F, '$1 != "{READ_WRITE}" {{ next }}
  $2 == "FRONTEND" {{ open = ($18 == "OPEN") }}
  $2 != "FRONTEND" && $2 != "BACKEND" && $18 ~ /^UP/ {{ up++ }}
  END {{ exit !(open && up <= 1) }}'
""")
