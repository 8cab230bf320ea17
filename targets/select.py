"""The concrete target a stack asks for: the only module that knows both of them."""

from __future__ import annotations

import pulumi

from config.models import ClusterConfig
from targets.base import Target
from targets.docker import DockerTarget
from targets.ssh import SshTarget


def make_target(cfg: ClusterConfig, ssh_private_key: pulumi.Input[str] | None = None,
                ssh_known_hosts: tuple[str, str] | None = None) -> Target:
    """The target named by `cfg.target` (the ssh one with the (path, text) of `ssh.known_hosts_file`)."""
    if cfg.target == "docker":
        return DockerTarget(cfg)
    if ssh_private_key is None:
        raise ValueError("pgha:sshPrivateKey: missing; the ssh target needs a private key (see README)")
    return SshTarget(cfg, ssh_private_key, ssh_known_hosts)
