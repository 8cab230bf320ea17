"""HAProxyGroup: HAProxy nodes routing to Patroni's leader and replicas, behind a keepalived VIP."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pulumi

from catalog.roles import HAPROXY
from components.secrets import render_secret, shape_of
from components.tls import ClusterCA, ServerCertificate
from config.models import ClusterConfig
from operations import upgrade
from render import paths
from render.credentials import Credentials
from render.haproxy import render_haproxy, save_state_command
from render.keepalived import render_haproxy_ready, render_keepalived
from targets import File, HostStep, Listener, Process, ServiceSpec, Target

VRRP_CAPABILITIES = ("NET_ADMIN", "NET_BROADCAST", "NET_RAW")
# The first node's step that waits for the nodes that leave (HAProxyGroupArgs.left).
LEFT_STEP = "after-leavers"


@dataclass(frozen=True)
class HAProxyGroupArgs:
    """Inputs of an HAProxyGroup."""

    cfg: ClusterConfig
    target: Target
    credentials: pulumi.Output[Credentials]
    ca: ClusterCA
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    # Resolves once the HAProxy nodes that leave have stopped: the first node converges after it, so no node
    # that stays drops a VRRP peer that still runs (it would take the virtual IP as well).
    left: pulumi.Input[Any] = None


def node_processes(vip: bool) -> tuple[Process, ...]:
    """The processes of an HAProxy node's service: HAProxy, and keepalived where a virtual IP is set (a node
    that leaves stops them: operations/haproxy_membership.py)."""
    haproxy = Process("haproxy", ("/usr/sbin/haproxy", "-W", "-db", "-f", paths.HAPROXY_CONFIG),
                      on_change="reload", reload_signal="USR2",
                      reads=(paths.HAPROXY_CONFIG, paths.HAPROXY_TLS_CA, paths.HAPROXY_TLS_CLIENT),
                      before_change=save_state_command(),
                      # The master re-executes its binary on USR2: a new HAProxy without a restart.
                      packages=("haproxy",), upgrade="reload")
    if not vip:
        return (haproxy,)
    keepalived = Process("keepalived", ("/usr/sbin/keepalived", "--dont-fork", "--log-console", "--use-file",
                                        paths.KEEPALIVED_CONFIG), on_change="reload",
                         reads=(paths.KEEPALIVED_CONFIG,), packages=("keepalived",))
    return (haproxy, keepalived)


def client_pem(certificate: ServerCertificate) -> pulumi.Output[str]:
    """The one PEM file HAProxy's `crt` takes: the certificate chain, then its key (a secret)."""
    return pulumi.Output.secret(pulumi.Output.all(certificate.cert_pem, certificate.key_pem).apply(
        lambda pems: "".join(p if p.endswith("\n") else p + "\n" for p in pems)))


# The type this component had before it was renamed: an alias keeps existing stacks' resources (children
# inherit it), so the rename replaces nothing.
FORMER_TYPES = ("pgha:index:HAProxyPair",)


class HAProxyGroup(pulumi.ComponentResource):
    """HAProxy on every configured node (two or more); keepalived moves the virtual IP to a node whose
    HAProxy runs."""

    stats_urls: pulumi.Output[list[str]]
    published: dict[int, list[tuple[str, int]]]

    def __init__(self, name: str, args: HAProxyGroupArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        aliases = pulumi.ResourceOptions(aliases=[pulumi.Alias(type_=t) for t in FORMER_TYPES])
        super().__init__(HAPROXY.component, name, None, pulumi.ResourceOptions.merge(opts, aliases))
        cfg, creds = args.cfg, args.credentials
        hap = cfg.haproxy
        vip = hap.virtual_ip is not None
        self.published = {}
        self.ready: list[pulumi.Resource] = []
        for node in hap.nodes:
            files = [
                File(
                    paths.HAPROXY_CONFIG,
                    render_secret(creds, partial(render_haproxy, cfg, node)),
                    mode="0600",
                    secret=True,
                    kind="haproxy",
                    shape=shape_of(partial(render_haproxy, cfg, node)),
                ),
                # The checks verify the Patroni nodes with the CA and present this node's client certificate.
                File(paths.HAPROXY_TLS_CA, args.ca.cert_pem, mode="0644"),
                File(paths.HAPROXY_TLS_CLIENT,
                     client_pem(args.ca.client_certificate(f"{name}-{node.name}", node, self)),
                     mode="0600", secret=True),
            ]
            processes = list(node_processes(vip))
            if vip:
                files.append(
                    File(
                        paths.KEEPALIVED_CONFIG,
                        render_secret(creds, partial(render_keepalived, cfg, node)),
                        mode="0600",
                        secret=True,
                        kind="keepalived",
                        shape=shape_of(partial(render_keepalived, cfg, node)),
                    )
                )
                files.append(File(paths.HAPROXY_READY_SCRIPT, render_haproxy_ready(), mode="0755"))
            carried = ("stats", "keepalived") if vip else ("stats",)  # the credentials its files hold
            spec = ServiceSpec(
                role=HAPROXY.name,
                host=node,
                packages=HAPROXY.packages_for(virtual_ip=vip),
                processes=tuple(processes),
                files=tuple(files),
                listeners=(Listener(hap.stats_port, str(node.address), "HAProxy stats"),
                           Listener(hap.read_write_port, "0.0.0.0", "HAProxy read-write"),
                           Listener(hap.read_only_port, "0.0.0.0", "HAProxy read-only")),
                published_ports=(hap.read_write_port, hap.read_only_port, hap.stats_port),
                # Any HTTP answer (401 without credentials) proves HAProxy serves; probing the SQL
                # ports instead would open a PostgreSQL connection on every check.
                health=("curl", "-s", "-o", "/dev/null", f"http://{node.address}:{hap.stats_port}/"),
                capabilities=VRRP_CAPABILITIES if vip else (),
                depends_on=tuple(args.depends_on),
                # One node at a time: the other keeps the virtual IP and the ports answering meanwhile.
                after=tuple(self.ready[-1:]),
                facts={"credentials": cfg.rotate.generations(carried)},
                # Replaced, the node that holds the virtual IP gives it to its peer first.
                handover=upgrade.render_vip_handover(cfg, node.name) if vip else None,
                before_converge=() if self.ready or args.left is None else (
                    HostStep(LEFT_STEP, pulumi.Output.from_input(args.left).apply(lambda _: ":")),),
            )
            placement = args.target.place(f"{name}-{node.name}", spec, self)
            self.ready.append(placement.ready)
            for port, endpoint in placement.published.items():
                self.published.setdefault(port, []).append(endpoint)
        self.stats_urls = pulumi.Output.from_input(
            [f"http://{n.address}:{hap.stats_port}/" for n in hap.nodes]
        )
        self.register_outputs({"stats_urls": self.stats_urls})
