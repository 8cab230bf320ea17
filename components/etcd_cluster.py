"""EtcdCluster: the distributed configuration store Patroni elects its leader through."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

import operations.etcd
from catalog.roles import ETCD
from components.tls import ClusterCA
from config.models import ClusterConfig
from operations.topology import ETCD_TLS, ETCD_TLS_TRANSITION
from render import paths
from render.etcd import (
    ETCDCTL,
    other_client_urls,
    render_etcd,
    render_etcd_cluster,
    render_etcd_health,
    render_etcd_start,
)
from targets import DataDir, File, Listener, Placement, Process, ServiceSpec, Target


@dataclass(frozen=True)
class EtcdClusterArgs:
    """Inputs of an EtcdCluster."""

    cfg: ClusterConfig
    target: Target
    ca: ClusterCA


class EtcdCluster(pulumi.ComponentResource):
    """One etcd member per configured host. `members` are the placements; a member is healthy only with a
    quorum of its peers, so the cluster waits for all of them with a day-2 step (operations/etcd.py)."""

    endpoints: pulumi.Output[list[str]]

    def __init__(self, name: str, args: EtcdClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(ETCD.component, name, None, opts)
        cfg = args.cfg
        placements: list[Placement] = []
        for member in cfg.etcd.members:
            tls = args.ca.etcd_member_certificate(f"{name}-{member.name}", member, self)
            root = args.ca.etcd_root_certificate(f"{name}-{member.name}", member, self)
            spec = ServiceSpec(
                role=ETCD.name,
                host=member,
                packages=ETCD.packages,
                # The bootstrap settings are read only by a member that starts empty: a membership change
                # rewrites them everywhere and restarts no member.
                # etcd reads its certificate and key again at each handshake (a renewal needs no restart), the
                # CA bundle only when it starts.
                processes=(Process("etcd", (paths.ETCD_START_SCRIPT,), user="etcd", packages=("etcd-server",),
                                   reads=(paths.ETCD_CONFIG, paths.ETCD_START_SCRIPT, paths.ETCD_TLS_CA)),),
                files=(File(paths.ETCD_CONFIG, render_etcd(cfg, member), owner="etcd", kind="etcd"),
                       File(paths.ETCD_CLUSTER_ENV, render_etcd_cluster(cfg, member)),
                       File(paths.ETCD_START_SCRIPT, render_etcd_start(cfg), mode="0755"),
                       File(paths.ETCD_HEALTH_SCRIPT, render_etcd_health(cfg), mode="0755"),
                       File(paths.ETCD_TLS_CERT, tls.cert_pem, mode="0644", owner="etcd"),
                       File(paths.ETCD_TLS_KEY, tls.key_pem, mode="0600", owner="etcd", secret=True),
                       File(paths.ETCD_TLS_CA, args.ca.cert_pem, mode="0644", owner="etcd"),
                       File(paths.ETCD_ROOT_CERT, root.cert_pem, mode="0644", owner="etcd"),
                       File(paths.ETCD_ROOT_KEY, root.key_pem, mode="0600", owner="etcd", secret=True)),
                listeners=(Listener(cfg.etcd.client_port, str(member.address), "etcd client"),
                           Listener(cfg.etcd.client_port, "127.0.0.1", "etcd client"),
                           Listener(cfg.etcd.peer_port, str(member.address), "etcd peer")),
                data_dirs=(DataDir("data", paths.ETCD_DATA_ROOT, "etcd", holds=f"{cfg.name}/member"),),
                health=(paths.ETCD_HEALTH_SCRIPT,),
                # A member is healthy only once a quorum of its peers is up: on a first deployment the members
                # start without waiting. One that joins a running cluster (another member serves a quorum
                # read) waits until it is healthy, a learner until it was promoted: the next one joins after.
                wait=False,
                wait_when=(f"{ETCDCTL} --endpoints={other_client_urls(cfg, member)} "
                           "get --consistency=l pgha-etcd-probe >/dev/null 2>&1"),
                # Every path TLS with client certificates; both schemes in the first deployment of the move from
                # plain HTTP, as an earlier pgha ran etcd (operations/topology.py says when that is needed).
                # The CA bundle it trusts (a change restarts it: the change plan says so; the certificates
                # themselves are not in the plan, like the PostgreSQL nodes').
                facts={"etcd_tls": ETCD_TLS_TRANSITION if cfg.etcd.tls_migration else ETCD_TLS,
                       "etcd_trust": {"ca_generation": cfg.tls.ca_generation,
                                      "trust_previous_ca": cfg.tls.trust_previous_ca}},
                # One member at a time: a change restarts etcd, and two members down lose the quorum.
                after=(placements[-1].ready,) if placements else (),
            )
            placements.append(args.target.place(f"{name}-{member.name}", spec, self))
        self.members: list[pulumi.Resource] = [p.ready for p in placements]
        self.endpoints = pulumi.Output.from_input(operations.etcd.endpoints(cfg))
        self.register_outputs({"endpoints": self.endpoints})
