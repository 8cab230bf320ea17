"""Patroni 4.0.7 configuration (patroni.yml) of one PostgreSQL node."""

from __future__ import annotations

from typing import Any

from config.models import ClusterConfig, Host
from render.common import dump_yaml, render_template, require_member, with_header
from render.credentials import (
    REPLICATION_USER,
    RESTAPI_USER,
    REWIND_USER,
    SUPERUSER,
    Credentials,
    etcd_patroni_user,
)
from render.paths import (
    DCS_CONFIG,
    PATRONI_CONFIG,
    PATRONI_ETCD_CERT,
    PATRONI_ETCD_KEY,
    PG_BIN,
    PG_DATA,
    PG_SOCKET_DIR,
    PG_TLS_CA,
    PG_TLS_CERT,
    PG_TLS_KEY,
    PGPASS,
    POST_BOOTSTRAP_SCRIPT,
)
from render.shell import REST_CURL, rest_url

AUTH_METHOD = "scram-sha-256"
# The Patroni tag that names the etcd user the node logs in as (etcd_login_tag).
ETCD_USER_TAG = "etcd_user"
# Headroom over one sender and one slot per member: pg_basebackup, pgBackRest and a spare.
EXTRA_WAL_SENDERS = 5


def dcs_namespace(creds: Credentials) -> str:
    """Patroni's DCS namespace: a fresh random id per deployment, so old key spaces are never reused."""
    return namespace_path(creds.dcs_namespace)


def namespace_path(dcs_id: str) -> str:
    """The DCS namespace of the random id `dcs_id`."""
    return f"/pgha/{dcs_id}/"


def synchronous_settings(cfg: ClusterConfig) -> dict[str, Any]:
    """Patroni's synchronous replication keys for cfg.patroni.synchronous_mode."""
    mode = cfg.patroni.synchronous_mode
    if mode == "off":
        return {"synchronous_mode": False}
    settings: dict[str, Any] = {
        "synchronous_mode": "quorum" if mode == "quorum" else True,
        "synchronous_node_count": cfg.patroni.synchronous_node_count,
    }
    if mode == "strict":
        settings["synchronous_mode_strict"] = True
    return settings


def pg_hba(cfg: ClusterConfig) -> list[str]:
    """pg_hba.conf lines, by role: the superuser only over the local socket (peer); `replicator` only from the
    PostgreSQL members (and a member's own loopback); `rewind` only from the members, to the `postgres`
    database pg_rewind reads; the application roles only from the HAProxy nodes and `client_cidrs`. Every TCP
    rule is scram-sha-256 and every rule off loopback `hostssl`; any other connection matches no rule."""
    method = AUTH_METHOD
    pg = cfg.postgres
    members = [f"{n.address}/32" for n in pg.nodes]
    clients = [*(f"{n.address}/32" for n in cfg.haproxy.nodes), *(str(c) for c in pg.client_cidrs)]
    app_roles = f"{pg.app_user},{pg.readonly_user}"
    rules = [
        # Patroni (use_unix_socket), pgBackRest and the deployment's own steps, as the postgres OS user.
        f"local all {SUPERUSER} peer",
        # A rejoining former primary reads its timeline over a local replication connection.
        f"host replication {REPLICATION_USER} 127.0.0.1/32 {method}",
    ]
    rules += [f"hostssl replication {REPLICATION_USER} {m} {method}" for m in members]
    rules += [f"hostssl postgres {REWIND_USER} {m} {method}" for m in members]
    rules += [f"hostssl all {app_roles} {c} {method}" for c in dict.fromkeys(clients)]
    return rules


def tls_parameters() -> dict[str, str]:
    """PostgreSQL's server TLS (node-local paths, so in patroni.yml rather than the DCS)."""
    return {
        "ssl": "on",
        "ssl_cert_file": PG_TLS_CERT,
        "ssl_key_file": PG_TLS_KEY,
        "ssl_min_protocol_version": "TLSv1.2",
    }


def rest_tls(cfg: ClusterConfig) -> dict[str, Any]:
    """The REST API's TLS: HTTPS with the node's certificate; every request that changes something (POST, PUT,
    PATCH, DELETE) must present a certificate of the cluster CA, besides the password, and come from a member
    or an HAProxy node; reads need neither (HAProxy's checks, monitoring), but are TLS too."""
    allowed = ["127.0.0.1", *(str(n.address) for n in cfg.postgres.nodes), *(str(n.address) for n in cfg.haproxy.nodes)]
    return {
        "certfile": PG_TLS_CERT,
        "keyfile": PG_TLS_KEY,
        "cafile": PG_TLS_CA,
        "verify_client": "optional",
        "allowlist": list(dict.fromkeys(allowed)),
        # Members that join before every node's file lists them (a scale-out) are allowed from the DCS.
        "allowlist_include_members": True,
    }


def verified_tls() -> dict[str, str]:
    """libpq options for connections to another member: TLS, certificate checked against the CA."""
    return {"sslmode": "verify-full", "sslrootcert": PG_TLS_CA}


def cluster_parameters(cfg: ClusterConfig) -> dict[str, Any]:
    """Cluster-wide PostgreSQL parameters (stored in the DCS at bootstrap); user values win."""
    senders = max(10, len(cfg.postgres.nodes) + EXTRA_WAL_SENDERS)
    params: dict[str, Any] = {
        "wal_level": "replica",
        "hot_standby": "on",
        "wal_log_hints": "on",
        "max_wal_senders": senders,
        "max_replication_slots": senders,
        "password_encryption": AUTH_METHOD,
        "archive_mode": "on",
        "archive_command": f'pgbackrest --stanza={cfg.stanza} archive-push "%p"',
        "archive_timeout": 60,
    }
    params.update(cfg.postgres.parameters)
    return params


def dynamic_config(cfg: ClusterConfig) -> dict[str, Any]:
    """Patroni's dynamic (DCS) configuration: timing, replication mode, parameters and pg_hba."""
    patroni = cfg.patroni
    return {
        "ttl": patroni.ttl,
        "loop_wait": patroni.loop_wait,
        "retry_timeout": patroni.retry_timeout,
        "maximum_lag_on_failover": patroni.maximum_lag_on_failover,
        "failsafe_mode": patroni.failsafe_mode,
        "member_slots_ttl": patroni.member_slots_ttl,
        **synchronous_settings(cfg),
        "postgresql": {
            "use_pg_rewind": patroni.use_pg_rewind,
            "use_slots": patroni.use_slots,
            "parameters": cluster_parameters(cfg),
            "pg_hba": pg_hba(cfg),
        },
    }


def render_dynamic_config(cfg: ClusterConfig) -> str:
    """The DCS configuration as YAML, for `patronictl edit-config --replace` on a running cluster."""
    return dump_yaml(dynamic_config(cfg))


def render_dcs_sync_script(cfg: ClusterConfig) -> str:
    """Bash reconciler: on the leader, replace the DCS configuration whenever it differs from DCS_CONFIG."""
    text = render_template(
        "pgha-dcs-sync.sh.j2",
        rest_curl=REST_CURL,
        primary_url=rest_url("127.0.0.1", cfg.patroni.rest_api_port, "/primary"),
        patroni_config=PATRONI_CONFIG,
        dcs_config=DCS_CONFIG,
        interval_s=max(cfg.patroni.loop_wait, 10),
    )
    return with_header(text)


def replica_restore_command(cfg: ClusterConfig) -> str:
    """Patroni's `pgbackrest` replica method: restore the newest backup as a standby (delta: a data directory
    left by an earlier try is reused); Patroni then writes its own standby.signal and primary_conninfo."""
    return f"pgbackrest --stanza={cfg.stanza} --delta --type=standby restore"


def replica_methods(cfg: ClusterConfig) -> dict[str, Any]:
    """Patroni's create_replica_methods (and the pgbackrest method's settings) by postgres.new_replicas_from."""
    if cfg.postgres.new_replicas_from == "leader":
        return {"create_replica_methods": ["basebackup"]}
    return {"create_replica_methods": ["pgbackrest", "basebackup"],
            "pgbackrest": {"command": replica_restore_command(cfg), "keep_data": True, "no_params": True}}


def etcd_connection() -> dict[str, str]:
    """How Patroni connects to etcd, which it reads only when it starts (a reload applies the user and the
    password alone): the PostgreSQL node's service restarts Patroni, paused, when it changes. The hosts are not
    part of it: Patroni follows the client URLs etcd's member list advertises, and its hosts only seed it."""
    return {"protocol": "https", "cacert": PG_TLS_CA, "cert": PATRONI_ETCD_CERT, "key": PATRONI_ETCD_KEY}


def render_etcd_connection() -> str:
    """The file that stands for etcd_connection() on the node: its change restarts Patroni."""
    return dump_yaml(etcd_connection())


def etcd_login(cfg: ClusterConfig, creds: Credentials) -> dict[str, str]:
    """Patroni's etcd user and password; none during the first deployment of the move from plain HTTP, while
    etcd's access control is off (Patroni 4.0.7 given a password cannot start against such an etcd: it takes
    the "authentication is not enabled" answer for an error). The second deployment gives them by a reload,
    which Patroni applies without logging in, and enables the access control after every node took it."""
    if cfg.etcd.tls_migration:
        return {}
    return {"username": etcd_patroni_user(cfg.rotate.etcd), "password": creds.etcd}


def etcd_login_tag(cfg: ClusterConfig) -> dict[str, str]:
    """Patroni's tag naming the etcd user it logs in as. Patroni applies its tags and its etcd login in the
    same reload and publishes the tags in its member key: once every node's key names the current user, an
    old user can go (operations/etcd.render_enable) without refusing a Patroni that still logs in as it."""
    return {} if cfg.etcd.tls_migration else {ETCD_USER_TAG: etcd_patroni_user(cfg.rotate.etcd)}


def render_patroni(cfg: ClusterConfig, node: Host, creds: Credentials) -> str:
    """The patroni.yml of PostgreSQL node `node` (one of cfg.postgres.nodes)."""
    require_member(node, cfg.postgres.nodes, "postgres.nodes")
    patroni = cfg.patroni
    port = cfg.postgres.port
    hba = pg_hba(cfg)
    data: dict[str, Any] = {
        "scope": cfg.name,
        "namespace": dcs_namespace(creds),
        "name": node.name,
        "restapi": {
            "listen": f"0.0.0.0:{patroni.rest_api_port}",
            "connect_address": f"{node.address}:{patroni.rest_api_port}",
            "authentication": {"username": RESTAPI_USER, "password": creds.restapi},
            **rest_tls(cfg),
        },
        "tags": etcd_login_tag(cfg),
        # patronictl, and Patroni's own calls to the other members (/failsafe), present the node's certificate.
        "ctl": {"certfile": PG_TLS_CERT, "keyfile": PG_TLS_KEY, "cacert": PG_TLS_CA, "insecure": False},
        # etcd over TLS, verified with the cluster CA; the client certificate (no common name) gets Patroni
        # through etcd's client-certificate check, its password makes it the etcd user its role allows.
        "etcd3": {"hosts": [f"{m.address}:{cfg.etcd.client_port}" for m in cfg.etcd.members],
                  **etcd_connection(), **etcd_login(cfg, creds)},
        "bootstrap": {
            "dcs": dynamic_config(cfg),
            "initdb": [{"encoding": "UTF8"}, {"locale": "C.UTF-8"}, "data-checksums"],
            "post_bootstrap": POST_BOOTSTRAP_SCRIPT,
        },
        "postgresql": {
            "listen": f"0.0.0.0:{port}",
            "connect_address": f"{node.address}:{port}",
            "data_dir": PG_DATA,
            "bin_dir": PG_BIN,
            "pgpass": PGPASS,
            # Patroni's own connections as the superuser go over the socket, the only place pg_hba admits it.
            "use_unix_socket": True,
            "authentication": {
                "superuser": {"username": SUPERUSER, "password": creds.superuser},
                "replication": {"username": REPLICATION_USER, "password": creds.replication, **verified_tls()},
                "rewind": {"username": REWIND_USER, "password": creds.rewind, **verified_tls()},
            },
            "parameters": {"unix_socket_directories": PG_SOCKET_DIR, **tls_parameters()},
            "pg_hba": list(hba),  # a copy: safe_dump would write the shared list as a YAML alias
            # A new replica restores the latest backup from the repository and replays the archive, so the
            # leader only streams what came after; without a backup (a first deployment) Patroni goes on to
            # pg_basebackup from the leader, on an emptied data directory.
            **replica_methods(cfg),
            "basebackup": {"checkpoint": "fast"},
            "recovery_conf": {"restore_command": f'pgbackrest --stanza={cfg.stanza} archive-get %f "%p"'},
        },
    }
    return dump_yaml(data)
