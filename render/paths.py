"""On-host paths shared by every deployment target (the Docker image and bare-metal Debian hosts)."""

from __future__ import annotations

from typing import Final

PG_MAJOR: Final = 17
PG_HOME: Final = "/var/lib/postgresql"
PG_DATA: Final = f"{PG_HOME}/{PG_MAJOR}/main"
PG_BIN: Final = f"/usr/lib/postgresql/{PG_MAJOR}/bin"
PG_SOCKET_DIR: Final = "/var/run/postgresql"
# Patroni writes this itself (mode 0600) from postgresql.authentication.
PGPASS: Final = f"{PG_HOME}/.pgpass_patroni"

PATRONI_CONFIG_DIR: Final = "/etc/patroni"
PATRONI_CONFIG: Final = f"{PATRONI_CONFIG_DIR}/patroni.yml"
# PostgreSQL's TLS: the node's certificate and key (owner postgres, 0600) and the cluster CA, which
# replication and rewind connections verify the other members against.
PG_TLS_DIR: Final = f"{PATRONI_CONFIG_DIR}/tls"
PG_TLS_CERT: Final = f"{PG_TLS_DIR}/server.crt"
PG_TLS_KEY: Final = f"{PG_TLS_DIR}/server.key"
PG_TLS_CA: Final = f"{PG_TLS_DIR}/ca.crt"
# Patroni's client certificate for etcd (no common name: etcd's gateway, Patroni's only way in, refuses one
# that has a name) and its key, owner postgres, 0600; Patroni logs in as the etcd user `patroni` by password.
PATRONI_ETCD_CERT: Final = f"{PG_TLS_DIR}/etcd-client.crt"
PATRONI_ETCD_KEY: Final = f"{PG_TLS_DIR}/etcd-client.key"
# How Patroni connects to etcd (patroni.yml's etcd3 section but the hosts and the login), apart: Patroni reads
# it only when it starts, so its change restarts Patroni (components/patroni_node.py).
PATRONI_ETCD_CONNECTION: Final = f"{PATRONI_CONFIG_DIR}/etcd-connection.yml"
# Patroni's REST API serves HTTPS with the node's certificate (it also signs the node's own client requests:
# patronictl and Patroni's calls to other members), and asks unsafe requests for a client certificate.
REST_SCHEME: Final = "https"
# Holds SCRAM verifiers of the application roles: secret, owner postgres, mode 0600.
BOOTSTRAP_SQL: Final = f"{PATRONI_CONFIG_DIR}/post-bootstrap.sql"

ETCD_CONFIG: Final = "/etc/pgha/etcd.yml"
# The configured membership, read only by a member that starts empty (render/etcd.py).
ETCD_CLUSTER_ENV: Final = "/etc/pgha/etcd-cluster.env"
ETCD_START_SCRIPT: Final = "/usr/local/bin/pgha-etcd-start"
ETCD_HEALTH_SCRIPT: Final = "/usr/local/bin/pgha-etcd-health"
ETCD_DATA_ROOT: Final = "/var/lib/etcd"
# etcd's TLS (owner etcd, keys 0600): the member's certificate (served on the client and peer ports, presented
# when it dials the other members), the cluster CA, and the `root` client certificate pgha's own etcdctl calls
# present (etcd maps its common name to the user root over gRPC).
ETCD_TLS_DIR: Final = "/etc/pgha/etcd-tls"
ETCD_TLS_CERT: Final = f"{ETCD_TLS_DIR}/member.crt"
ETCD_TLS_KEY: Final = f"{ETCD_TLS_DIR}/member.key"
ETCD_TLS_CA: Final = f"{ETCD_TLS_DIR}/ca.crt"
ETCD_ROOT_CERT: Final = f"{ETCD_TLS_DIR}/root.crt"
ETCD_ROOT_KEY: Final = f"{ETCD_TLS_DIR}/root.key"

HAPROXY_CONFIG: Final = "/etc/haproxy/haproxy.cfg"
# HAProxy's checks of Patroni's REST API verify the node against the cluster CA and present this node's client
# certificate (one PEM with its key).
HAPROXY_TLS_DIR: Final = "/etc/haproxy/tls"
HAPROXY_TLS_CA: Final = f"{HAPROXY_TLS_DIR}/ca.crt"
HAPROXY_TLS_CLIENT: Final = f"{HAPROXY_TLS_DIR}/client.pem"
# The master CLI socket and the server states a reload carries over (both in the package's home directory).
HAPROXY_SOCKET: Final = "/var/lib/haproxy/admin.sock"
HAPROXY_STATE: Final = "/var/lib/haproxy/server-state"
KEEPALIVED_CONFIG: Final = "/etc/keepalived/keepalived.conf"
# keepalived's check: HAProxy runs and routes writes to at most one server (a fresh HAProxy starts with
# every server UP until its checks have run).
HAPROXY_READY_SCRIPT: Final = "/usr/local/bin/pgha-haproxy-ready"
# While it holds a future time (epoch seconds), that check fails: the node gives the virtual IP up before
# it is replaced (operations/upgrade.py). A time, not a flag: a deployment that stops half-way leaves no
# node out of the VRRP group for longer than that.
VIP_RELEASE: Final = "/run/pgha-vip-release"

PGBACKREST_CONFIG: Final = "/etc/pgbackrest/pgbackrest.conf"
PGBACKREST_LOG_DIR: Final = "/var/log/pgbackrest"
BACKUP_CRON: Final = "/etc/cron.d/pgha-backup"
# Serialises scheduled backups that fall on the same minute (e.g. incr and full at 01:15).
BACKUP_LOCK: Final = f"{PG_SOCKET_DIR}/pgha-backup.lock"

SCRIPT_DIR: Final = "/usr/local/bin"
BACKUP_SCRIPT: Final = f"{SCRIPT_DIR}/pgha-backup"
POST_BOOTSTRAP_SCRIPT: Final = f"{SCRIPT_DIR}/pgha-post-bootstrap"
# Patroni reads bootstrap.dcs only when it creates the cluster; this file and the reconciler keep
# the DCS equal to the stack config afterwards.
DCS_CONFIG: Final = f"{PATRONI_CONFIG_DIR}/dynamic.yml"
DCS_SYNC_SCRIPT: Final = f"{SCRIPT_DIR}/pgha-dcs-sync"


def etcd_data_dir(cluster_name: str) -> str:
    """The etcd data directory of one cluster: named after it, so clusters never share one."""
    return f"{ETCD_DATA_ROOT}/{cluster_name}"

# The ssh target's host firewall (render/firewall.py): pgha's own nftables table, its file and the unit that
# loads it at boot; each service on the host that wants it holds a claim (the last one gone removes it).
FIREWALL_TABLE: Final = "inet pgha"
FIREWALL_RULESET: Final = "/etc/pgha/firewall.nft"
FIREWALL_UNIT: Final = "pgha-firewall.service"
FIREWALL_CLAIMS: Final = "/etc/pgha/firewall.d"
FIREWALL_LOCK: Final = "/run/pgha-firewall.lock"
