"""EtcdCluster: the distributed configuration store Patroni elects its leader through."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

import operations.etcd
from catalog.roles import ETCD
from config.models import ClusterConfig
from render import paths
from render.etcd import render_etcd
from targets import DataDir, File, Listener, Placement, Process, ServiceSpec, Target


@dataclass(frozen=True)
class EtcdClusterArgs:
    """Inputs of an EtcdCluster."""

    cfg: ClusterConfig
    target: Target


class EtcdCluster(pulumi.ComponentResource):
    """One etcd member per configured host. `members` are the placements; a member is healthy only with a
    quorum of its peers, so the cluster waits for all of them with a day-2 step (operations/etcd.py)."""

    endpoints: pulumi.Output[list[str]]

    def __init__(self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ETCD.component, name, None, opts)
        cfg = args.cfg
        local = f"--endpoints=http://127.0.0.1:{cfg.etcd.client_port}"
        placements: list[Placement] = []
        for member in cfg.etcd.members:
            spec = ServiceSpec(
                role=ETCD.name,
                host=member,
                packages=ETCD.packages,
                processes=(Process("etcd", ("/usr/bin/etcd", "--config-file", paths.ETCD_CONFIG), user="etcd",
                                   packages=("etcd-server",)),),
                files=(File(paths.ETCD_CONFIG, render_etcd(cfg, member), owner="etcd", kind="etcd"),),
                listeners=(Listener(cfg.etcd.client_port, str(member.address), "etcd client"),
                           Listener(cfg.etcd.client_port, "127.0.0.1", "etcd client"),
                           Listener(cfg.etcd.peer_port, str(member.address), "etcd peer")),
                data_dirs=(DataDir("data", paths.ETCD_DATA_ROOT, "etcd", holds=f"{cfg.name}/member"),),
                health=("etcdctl", local, "endpoint", "health"),
                wait=False,  # a member is healthy only once a quorum of its peers is up
                # One member at a time: a change restarts etcd, and two members down lose the quorum.
                after=(placements[-1].ready,) if placements else (),
            )
            placements.append(args.target.place(f"{name}-{member.name}", spec, self))
        self.members: list[pulumi.Resource] = [p.ready for p in placements]
        self.endpoints = pulumi.Output.from_input(operations.etcd.endpoints(cfg))
        self.register_outputs({"endpoints": self.endpoints})
