"""The pgha Pulumi program: read and validate stack config, declare the cluster, export endpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pulumi
from pulumi.runtime import config as runtime_config

from components.cluster import PostgresCluster, PostgresClusterArgs
from config import ClusterConfig, ConfigError, collect, parse
from operations import change_plan
from targets.select import make_target
from targets.ssh import agent_problem


def load_config() -> ClusterConfig:
    """Parse every `pgha:` key of the stack; raises before any resource is declared."""
    raw = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    try:
        return parse(collect(raw))
    except ConfigError as error:
        raise pulumi.RunError(str(error)) from None


def ssh_private_key(cfg: ClusterConfig) -> pulumi.Output[str] | None:
    """The SSH key as a secret: `pgha:sshPrivateKey` (secret config) or `ssh.private_key_file`."""
    if cfg.ssh is None:
        return None
    secret = pulumi.Config("pgha").get_secret("sshPrivateKey")
    if secret is not None:
        return secret
    if cfg.ssh.private_key_file is None:
        raise pulumi.RunError(
            "pgha:sshPrivateKey: missing; set it with `pulumi config set --secret pgha:sshPrivateKey "
            "< KEYFILE` or give pgha:ssh.private_key_file"
        )
    path = Path(cfg.ssh.private_key_file).expanduser()
    try:
        return pulumi.Output.secret(path.read_text())
    except OSError as error:
        raise pulumi.RunError(
            f"pgha:ssh.private_key_file: cannot read {path}: {error.strerror}"
        ) from None


def ssh_known_hosts(cfg: ClusterConfig) -> tuple[str, str] | None:
    """The (path, text) of `ssh.known_hosts_file`, when given; refuses, before anything is declared, a stack
    with an address that has no key there nor in `ssh.host_keys`."""
    if cfg.ssh is None or cfg.ssh.known_hosts_file is None:
        return None
    path = Path(cfg.ssh.known_hosts_file).expanduser()
    try:
        known_hosts = (str(path), path.read_text())
    except OSError as error:
        raise pulumi.RunError(f"pgha:ssh.known_hosts_file: cannot read {path}: {error.strerror}") from None
    try:
        cfg.pinned_host_keys(known_hosts)
    except ValueError as error:
        raise pulumi.RunError(f"invalid stack configuration:\n  pgha:{error}") from None
    return known_hosts


def check_ssh_agent(cfg: ClusterConfig) -> None:
    """Refuse, before anything is declared, an SSH agent socket every remote command would fail on."""
    if cfg.ssh is not None:
        problem = agent_problem(cfg.ssh.agent_socket_path, os.environ)
        if problem is not None:
            raise pulumi.RunError(problem)


def main() -> PostgresCluster:
    """Declare the whole stack."""
    cfg = load_config()
    check_ssh_agent(cfg)
    target = make_target(cfg, ssh_private_key(cfg), ssh_known_hosts(cfg))
    cluster = PostgresCluster(cfg.name, PostgresClusterArgs(cfg, target))
    hap = cfg.haproxy
    pulumi.export("cluster_name", cfg.name)
    # What this deployment applied per node (plain digests and settings, no secret), read back by the next
    # one to say what it will change, and what this one said it would do.
    pulumi.export(change_plan.APPLIED_OUTPUT, cluster.applied)
    pulumi.export(change_plan.PLAN_OUTPUT, cluster.change_plan)
    pulumi.export("read_write_endpoint", cluster.read_write)
    pulumi.export("read_only_endpoint", cluster.read_only)
    pulumi.export("app_dsn", cluster.app_dsn)
    pulumi.export("readonly_dsn", cluster.readonly_dsn)
    pulumi.export("ca_certificate", cluster.ca_certificate)
    pulumi.export("virtual_ip", str(hap.virtual_ip) if hap.virtual_ip is not None else None)
    pulumi.export("patroni_rest_urls", [n.rest_url for n in cluster.nodes])
    pulumi.export("haproxy_stats_urls", cluster.haproxy.stats_urls)
    pulumi.export("etcd_endpoints", cluster.etcd.endpoints)
    pulumi.export("backup_stanza", cluster.backup.stanza)
    pulumi.export(
        "published_endpoints",
        {
            role: {"host": eps[0][0], "ports": [p for _, p in eps]}
            for role, port in (("read_write", hap.read_write_port), ("read_only", hap.read_only_port),
                               ("stats", hap.stats_port))
            if (eps := cluster.haproxy.published.get(port))
        },
    )
    return cluster
