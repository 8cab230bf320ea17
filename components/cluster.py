"""PostgresCluster: the whole topology, composed from the four service components."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pulumi

from catalog.roles import CLUSTER_COMPONENT
from components.backup_repo import BackupRepo, BackupRepoArgs
from components.etcd_cluster import EtcdCluster, EtcdClusterArgs
from components.haproxy_group import HAProxyGroup, HAProxyGroupArgs, node_processes
from components.patroni_node import PatroniNode, PatroniNodeArgs, processes
from components.secrets import ClusterSecrets, secret
from components.tls import ClusterCA
from config.models import ClusterConfig
from operations import change_plan, haproxy_membership
from operations import postgres_membership as membership
from operations.backup_check import check_every_node
from operations.etcd import enable_access, enable_after, prune, wait_healthy
from operations.pending_restarts import apply_pending_restarts
from render.patroni import namespace_path
from targets import Target
from targets.converge import start_deferred


@dataclass(frozen=True)
class PostgresClusterArgs:
    """Inputs of a PostgresCluster."""

    cfg: ClusterConfig
    target: Target


class PostgresCluster(pulumi.ComponentResource):
    """etcd, then the backup repository, then Patroni nodes, then HAProxy: each waits for the last; the
    day-2 steps (operations/) run between them on every target."""

    read_write: pulumi.Output[dict[str, object]]
    read_only: pulumi.Output[dict[str, object]]
    app_dsn: pulumi.Output[str]
    readonly_dsn: pulumi.Output[str]
    ca_certificate: pulumi.Output[str]

    def __init__(self, name: str, args: PostgresClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(CLUSTER_COMPONENT, name, None, opts)
        cfg, target = args.cfg, args.target
        # The previous deployment's applied configuration (the stack's own outputs): the change plan's "before".
        self.before = change_plan.previous(name, self)
        self.secrets = ClusterSecrets(name, cfg.rotate, self)
        creds = self.secrets.credentials
        self.ca = ClusterCA(name, cfg, target.client_addresses(), self)
        target.prepare(self)
        self.etcd = EtcdCluster(f"{name}-etcd", EtcdClusterArgs(cfg, target, self.ca),
                                pulumi.ResourceOptions(parent=self))
        # Patroni starts only against an etcd cluster with every member healthy.
        self.etcd_healthy = wait_healthy(f"{name}-etcd-healthy", cfg, target, self.etcd.members, self.etcd)
        # etcd's access control, on before any Patroni starts: Patroni 4.0.7 logging in with a password to an etcd
        # whose access control is off does not recognise the gateway's "not enabled" answer and waits on etcd.
        self.etcd_access = enable_access(f"{name}-etcd-access", cfg, target, creds, [self.etcd_healthy], self.etcd)
        self.backup = BackupRepo(
            f"{name}-backup", BackupRepoArgs(cfg, target, creds), pulumi.ResourceOptions(parent=self)
        )
        # The running cluster's members (None when no Patroni answers): who leaves, who joins.
        live = target.postgres_members(list(cfg.postgres.nodes))
        # Members the stack no longer has leave first, one at a time, the leader last: their roles move to
        # nodes that stay before those take a configuration (pg_hba) that no longer admits them.
        self.postgres_left = membership.leave(f"{name}-postgres", cfg, target, membership.leaving(cfg, live),
                                              processes(cfg), [self.etcd_healthy], self)
        # In the rolling order (the replicas, the leader last): a change that replaces nodes (a new image)
        # takes them one after another; the list stays in the configured order. Nodes that join come after
        # the nodes that stay: they bootstrap once the leader's pg_hba admits them.
        new = membership.joining(cfg, live)
        kept = [n for n in cfg.postgres.nodes if n not in new]
        placed: dict[str, PatroniNode] = {}
        for node in [*target.rolling_order(kept, live), *new]:
            after = [placed[p].ready for p in list(placed)[-1:]]
            placed[node.name] = PatroniNode(
                f"{name}-{node.name}",
                PatroniNodeArgs(cfg, target, node, creds, self.backup, self.ca,
                                depends_on=[self.etcd_access, *self.postgres_left[-1:]], after=after),
                pulumi.ResourceOptions(parent=self),
            )
        self.nodes = [placed[n.name] for n in cfg.postgres.nodes]
        nodes_ready = [n.ready for n in self.nodes]
        if cfg.adopt_existing_data:
            # Adopted standbys' data starts only once the node with the primary's data leads (render_adoption).
            converged = list(nodes_ready)
            nodes_ready += [start_deferred(target, f"{name}-{n.spec.host.name}-adopted", n.spec, converged, self)
                            for n in self.nodes]
        # Members the stack no longer has leave the etcd cluster once every Patroni uses only the others.
        self.etcd_pruned = prune(f"{name}-etcd-membership", cfg, target, nodes_ready, self.etcd)
        # etcd's access control, if it is not on yet: a cluster moving from plain HTTP, whose Patroni nodes took
        # their etcd password (by reload) in this deployment.
        # Then the etcd users of earlier rotation generations go, once every Patroni logs in as the current one.
        self.etcd_enabled = enable_after(f"{name}-etcd-access-on", cfg, target,
                                         self.secrets.dcs_id.hex.apply(namespace_path), nodes_ready, self.etcd)
        # Nodes that left are gone from Patroni's view (their member keys expired) and hold no slot.
        self.postgres_forgotten = membership.forget(f"{name}-postgres-membership", cfg, target, nodes_ready, self)
        # A deployment ends with WAL reaching the repository from the primary (and a leader elsewhere).
        self.backup_checks = check_every_node(f"{name}-backup-check", cfg, target, nodes_ready, self.backup)
        # Parameters that need a restart: applied replicas first, the leader last.
        self.pending_restarts = apply_pending_restarts(f"{name}-pending-restarts", cfg, target, nodes_ready, self)
        # HAProxy nodes the stack no longer has hand the virtual IP over and stop before the others change.
        vip = cfg.haproxy.virtual_ip is not None

        def leave_haproxy(old: dict[str, Any]) -> Any:
            gone = haproxy_membership.leaving(cfg, old)
            return haproxy_membership.leave(f"{name}-haproxy", cfg, target, gone, node_processes(vip), self)

        haproxy_left = self.before.apply(leave_haproxy)
        self.haproxy = HAProxyGroup(
            f"{name}-haproxy",
            HAProxyGroupArgs(cfg, target, creds, self.ca, depends_on=nodes_ready, left=haproxy_left),
            pulumi.ResourceOptions(parent=self),
        )

        # Last, once nothing of the running cluster needs what this deployment removed: e.g. each host's firewall
        # loaded whole, closing what a member that left used until it left (targets/firewall.py).
        self.settled = target.settle([*self.haproxy.ready[-1:], self.pending_restarts, *self.backup_checks,
                                      self.etcd_pruned, self.postgres_forgotten,
                                      *filter(None, [self.etcd_enabled])], self)

        # Said before anything runs: what this deployment does to each node (operations/change_plan.py).
        self.change_plan = change_plan.declare(name, target.applied, self.before, self,
                                               live=membership.running(live))
        self.applied = target.applied

        hap = cfg.haproxy
        front = str(hap.virtual_ip) if hap.virtual_ip is not None else str(hap.nodes[0].address)
        self.read_write = pulumi.Output.from_input({"host": front, "port": hap.read_write_port})
        self.read_only = pulumi.Output.from_input({"host": front, "port": hap.read_only_port})
        pg = cfg.postgres
        self.app_dsn = self._dsn(pg.app_user, self.secrets.password("app"), front, hap.read_write_port, pg.database)
        self.readonly_dsn = self._dsn(
            pg.readonly_user, self.secrets.password("readonly"), front, hap.read_only_port, pg.database
        )
        self.ca_certificate = self.ca.cert_pem
        self.register_outputs(
            {
                "ca_certificate": self.ca_certificate,
                "read_write": self.read_write,
                "read_only": self.read_only,
                "app_dsn": self.app_dsn,
                "readonly_dsn": self.readonly_dsn,
            }
        )

    @staticmethod
    def _dsn(user: str, password: pulumi.Output[str], host: str, port: int, db: str) -> pulumi.Output[str]:
        # verify-full: the client checks the certificate chain against the `ca_certificate` output (its sslrootcert,
        # a file only the client knows the path of) and the host name against the certificate's names.
        return secret(password.apply(
            lambda pw: f"postgresql://{user}:{quote(pw, safe='')}@{host}:{port}/{db}?sslmode=verify-full"))
