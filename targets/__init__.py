"""Deployment targets: where and how the cluster's services run."""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig
from targets.base import DataDir, File, Placement, Process, ServiceSpec, Storage, Target
from targets.docker import DockerTarget
from targets.ssh import SshTarget

__all__ = ["DataDir", "File", "Placement", "Process", "ServiceSpec", "Storage", "Target", "make_target"]


def make_target(cfg: ClusterConfig, ssh_private_key: pulumi.Input[str] | None = None) -> Target:
    """The target named by `cfg.target`."""
    if cfg.target == "docker":
        return DockerTarget(cfg)
    if ssh_private_key is None:
        raise ValueError("pgha:sshPrivateKey: missing; the ssh target needs a private key (see README)")
    return SshTarget(cfg, ssh_private_key)
