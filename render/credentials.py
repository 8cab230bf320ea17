"""Resolved credentials handed to renderers (plain strings, only ever inside Output.apply)."""

from __future__ import annotations

from dataclasses import dataclass

from catalog import limits

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind"
RESTAPI_USER = "patroni"
STATS_USER = "stats"
# etcd's users: root (the client certificate with that common name, no password) and Patroni's (a password).
ETCD_ROOT_USER = limits.ETCD_ROOT_USER
ETCD_PATRONI_USER = limits.ETCD_PATRONI_USER
# The etcd member certificates' common name: the only one the peer port admits (etcd's allowed-cn). Never an
# etcd user's name: over gRPC with client-cert-auth, a certificate's common name is the user it acts as.
ETCD_MEMBER_CN = "pgha etcd member"


@dataclass(frozen=True)
class Credentials:
    """Every generated secret of one cluster; field names are the RandomPassword roles."""

    superuser: str
    replication: str
    rewind: str
    app: str
    readonly: str
    restapi: str
    keepalived: str  # VRRP PASS authentication uses at most 8 characters
    stats: str
    cipher: str  # pgBackRest repository cipher pass
    etcd: str  # the etcd user Patroni logs in as (ETCD_PATRONI_USER)
    dcs_namespace: str  # random id: a new deployment never inherits an old Patroni key space
