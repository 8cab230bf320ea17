"""HAProxy nodes leaving a running cluster: the virtual IP handed over, their service stopped, before any node
that stays drops them as VRRP peers.

keepalived sends its adverts only to its unicast peers. A node that stays and drops a peer that still runs
leaves that peer without adverts: after keepalived's master-down interval (about three adverts) it takes the
virtual IP as well. So a node that leaves stops first, on its own host: when it holds the virtual IP it
ends its client sessions, releases the address and waits until a node that stays answers on it
(operations/upgrade.py's handover), then its HAProxy and keepalived stop. The first HAProxy node that stays
converges only after that (HAProxyGroupArgs.left), the others after it, one at a time.

Who leaves comes from the previous deployment's applied configuration (its HAProxy hosts, with their
addresses): the steps are declared once the stack's own outputs are read.

A node that joins starts after the nodes before it in the list have reloaded with it as a peer (their chain),
as a backup with a lower priority (nopreempt): it takes the address only when no other node holds it. A new
node listed before a node that stays would start before that one knows it: the topology change refuses it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from config.models import ClusterConfig, Host
from operations.upgrade import render_vip_handover
from targets.base import Process, Target


def leaving(cfg: ClusterConfig, old: Mapping[str, Mapping[str, Any]]) -> list[Host]:
    """The HAProxy hosts of the previous deployment the stack no longer has (those whose address it knows)."""
    configured = {n.name for n in cfg.haproxy.nodes}
    return [Host.model_validate({"name": host, "address": facts["address"]}) for host, facts in old.items()
            if facts.get("role") == "haproxy" and host not in configured and facts.get("address")]


def render_leave(cfg: ClusterConfig, node: str) -> str:
    """Bash, run as root on HAProxy node `node`, which leaves: it hands the virtual IP over when it holds it
    (the target then stops its service)."""
    if cfg.haproxy.virtual_ip is None:
        return f'echo "pgha-leave: {node}: no virtual IP to hand over"\n'
    return render_vip_handover(cfg, node)


def leave(name: str, cfg: ClusterConfig, target: Target, gone: list[Host], processes: tuple[Process, ...],
          parent: pulumi.Resource) -> pulumi.Output[list[str]]:
    """Declare a leave step per HAProxy host in `gone`, one after another; an Output that resolves once all
    of them are done (at once when none leaves)."""
    steps: list[pulumi.Resource] = []
    for host in gone:
        steps.append(target.retire(f"{name}-{host.name}-leave", host, render_leave(cfg, host.name), processes,
                                   steps[-1:], parent))
    # A command's stdout is known once it ran: what depends on it waits for the step, not its registration.
    outputs: list[Any] = [s.stdout for s in steps]  # type: ignore[attr-defined]
    return pulumi.Output.all(*outputs)
