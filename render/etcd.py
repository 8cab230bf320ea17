"""etcd 3.5 configuration file (for `etcd --config-file`) of one member."""

from __future__ import annotations

from typing import Any

from config.models import ClusterConfig, Host
from render.common import dump_yaml, require_member
from render.paths import etcd_data_dir

# etcd's own defaults, written out so the timing Patroni depends on is visible in the file.
HEARTBEAT_INTERVAL_MS = 100
ELECTION_TIMEOUT_MS = 1000


def initial_cluster_token(cfg: ClusterConfig) -> str:
    """The etcd cluster token: derived from the cluster name so members of two clusters never join."""
    return f"{cfg.name}-etcd"


def _peer_url(cfg: ClusterConfig, member: Host) -> str:
    return f"http://{member.address}:{cfg.etcd.peer_port}"


def _client_url(cfg: ClusterConfig, address: object) -> str:
    return f"http://{address}:{cfg.etcd.client_port}"


def render_etcd(cfg: ClusterConfig, member: Host) -> str:
    """The YAML config file of etcd member `member` (one of cfg.etcd.members)."""
    require_member(member, cfg.etcd.members, "etcd.members")
    data: dict[str, Any] = {
        "name": member.name,
        "data-dir": etcd_data_dir(cfg.name),
        "listen-peer-urls": _peer_url(cfg, member),
        "listen-client-urls": f"{_client_url(cfg, member.address)},{_client_url(cfg, '127.0.0.1')}",
        "initial-advertise-peer-urls": _peer_url(cfg, member),
        "advertise-client-urls": _client_url(cfg, member.address),
        "initial-cluster": ",".join(f"{m.name}={_peer_url(cfg, m)}" for m in cfg.etcd.members),
        "initial-cluster-token": initial_cluster_token(cfg),
        # Only read when the data directory is empty; a bootstrapped member ignores it.
        "initial-cluster-state": "new",
        "heartbeat-interval": HEARTBEAT_INTERVAL_MS,
        "election-timeout": ELECTION_TIMEOUT_MS,
        # Patroni rewrites its keys every loop_wait: without compaction the database grows until
        # etcd raises the NOSPACE alarm and refuses writes.
        "auto-compaction-mode": "periodic",
        "auto-compaction-retention": "1h",
        "enable-v2": False,
        "log-level": "info",
        "logger": "zap",
        "log-outputs": ["stderr"],
    }
    return dump_yaml(data)
