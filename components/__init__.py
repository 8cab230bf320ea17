"""ComponentResources that compose a pgha cluster."""

from components.backup_repo import BackupRepo, BackupRepoArgs
from components.cluster import PostgresCluster, PostgresClusterArgs
from components.etcd_cluster import EtcdCluster, EtcdClusterArgs
from components.haproxy_group import HAProxyGroup, HAProxyGroupArgs
from components.patroni_node import PatroniNode, PatroniNodeArgs

__all__ = [
    "BackupRepo",
    "BackupRepoArgs",
    "EtcdCluster",
    "EtcdClusterArgs",
    "HAProxyGroup",
    "HAProxyGroupArgs",
    "PatroniNode",
    "PatroniNodeArgs",
    "PostgresCluster",
    "PostgresClusterArgs",
]
