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


def etcd_patroni_user(generation: int) -> str:
    """The etcd user Patroni logs in as at rotation generation `generation` of its password (its role is always
    ETCD_PATRONI_USER). A rotation makes a new user rather than changing the password: etcd invalidates every
    token at any change to its users, and a Patroni not yet reloaded, logging in again with the old password,
    would be refused (a refused leader demotes itself). The old user goes once every Patroni logs in as the new
    one. The dot keeps the name from ever being a host's (a certificate's common name is the user it acts as)."""
    return ETCD_PATRONI_USER if generation == 0 else f"{ETCD_PATRONI_USER}.{generation}"


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
    etcd: str  # the password of the etcd user Patroni logs in as (etcd_patroni_user)
    dcs_namespace: str  # random id: a new deployment never inherits an old Patroni key space
