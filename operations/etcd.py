"""Wait until the whole etcd cluster reports healthy, so Patroni starts against a store with a quorum."""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig
from render.shell import step_script, until_ok
from targets.base import Target


def endpoints(cfg: ClusterConfig) -> list[str]:
    """Every member's client URL."""
    return [f"http://{m.address}:{cfg.etcd.client_port}" for m in cfg.etcd.members]


def wait_healthy(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource) -> pulumi.Resource:
    """Declare the step on the first member: `etcdctl endpoint health` of every member succeeds."""
    check = ("etcdctl", f"--endpoints={','.join(endpoints(cfg))}", "endpoint", "health")
    return target.run_step(name, cfg.etcd.members[0], step_script(until_ok(check)), depends_on, parent)
