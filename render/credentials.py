"""Resolved credentials handed to renderers (plain strings, only ever inside Output.apply)."""

from __future__ import annotations

from dataclasses import dataclass

SUPERUSER = "postgres"
REPLICATION_USER = "replicator"
REWIND_USER = "rewind"
RESTAPI_USER = "patroni"
STATS_USER = "stats"


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
    dcs_namespace: str  # random id: a new deployment never inherits an old Patroni key space
