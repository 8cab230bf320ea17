"""`pgha-backup check` on every PostgreSQL node: on the primary a WAL switch that must reach the repository,
elsewhere a check that the cluster has a running leader."""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig
from render import paths
from render.shell import step_script, until_ok
from targets.base import Target


def check_every_node(name: str, cfg: ClusterConfig, target: Target, depends_on: list[pulumi.Resource],
                     parent: pulumi.Resource) -> list[pulumi.Resource]:
    """Declare one check per PostgreSQL node, after `depends_on`."""
    check = ("runuser", "-u", "postgres", "--", paths.BACKUP_SCRIPT, "check")
    return [target.run_step(f"{name}-{node.name}", node, step_script(until_ok(check)), depends_on, parent)
            for node in cfg.postgres.nodes]
