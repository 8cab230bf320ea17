"""HAProxy 3.0 configuration of one HAProxy node: read-write and read-only listeners over Patroni checks."""

from __future__ import annotations

import re

from config.models import ClusterConfig, Host
from render.common import render_template, require_member, with_header
from render.credentials import STATS_USER, Credentials
from render.paths import HAPROXY_SOCKET, HAPROXY_STATE, HAPROXY_TLS_CA, HAPROXY_TLS_CLIENT

MAXCONN = 4096
CONNECT_TIMEOUT = "4s"
CHECK_TIMEOUT = "2s"
STATS_REFRESH = "10s"
# The SQL listeners' names: the keepalived check reads the first one's servers; a handover stops both.
READ_WRITE = "postgres_read_write"
READ_ONLY = "postgres_read_only"
# HAProxy's tokenizer treats these specially outside quotes (configuration manual, 2.2).
_SPECIAL = re.compile(r"""([\\\s#'"])""")


def haproxy_word(text: str) -> str:
    """`text` as one HAProxy configuration word, backslash-escaping space, #, quotes and backslash."""
    if "\n" in text or "\r" in text:
        raise ValueError("value: line breaks cannot be written into haproxy.cfg")
    return _SPECIAL.sub(r"\\\1", text)


def save_state_command() -> str:
    """Shell run before HAProxy reloads: it writes every server's state (UP/DOWN from the Patroni checks) where
    the new process loads it. Without it a reloaded HAProxy starts with every server UP and sends the first
    read-write connections to replicas until the checks have failed `fall` times."""
    return (f"{admin_command('show servers state')} > {HAPROXY_STATE}.new"
            f" && mv {HAPROXY_STATE}.new {HAPROXY_STATE}")


def admin_command(command: str) -> str:
    """Shell that sends `command` to HAProxy's admin socket (root only) and prints the answer."""
    return f"echo '{command}' | socat stdio unix-connect:{HAPROXY_SOCKET}"


def client_sources(cfg: ClusterConfig) -> list[str]:
    """The networks HAProxy's listeners accept connections from: `postgres.client_cidrs` and the cluster's own
    hosts (on docker also the network's gateway: the Docker host, where dev clients and the published ports'
    proxy connect from; the docker target sets it to the subnet's first address)."""
    own = [f"{h.address}/32" for h in cfg.all_hosts()]
    if cfg.target == "docker":
        own.append(f"{cfg.docker_settings.subnet.network_address + 1}/32")
    return list(dict.fromkeys([*(str(c) for c in cfg.postgres.client_cidrs), *own]))


def render_haproxy(cfg: ClusterConfig, node: Host, creds: Credentials) -> str:
    """The haproxy.cfg of HAProxy node `node` (one of cfg.haproxy.nodes)."""
    require_member(node, cfg.haproxy.nodes, "haproxy.nodes")
    ha = cfg.haproxy
    check = ha.check
    timing = (
        f"inter {check.inter_ms}ms fastinter {check.fastinter_ms}ms downinter {check.downinter_ms}ms "
        f"fall {check.fall} rise {check.rise}"
    )
    text = render_template(
        "haproxy.cfg.j2",
        maxconn=MAXCONN,
        connect_timeout=CONNECT_TIMEOUT,
        check_timeout=CHECK_TIMEOUT,
        client_timeout=f"{ha.client_timeout_s}s",
        server_timeout=f"{ha.server_timeout_s}s",
        stats_bind=f"{node.address}:{ha.stats_port}",
        stats_refresh=STATS_REFRESH,
        client_sources=" ".join(client_sources(cfg)),
        stats_auth=haproxy_word(f"{STATS_USER}:{creds.stats}"),
        read_write_port=ha.read_write_port,
        read_only_port=ha.read_only_port,
        max_replica_lag_bytes=ha.max_replica_lag_bytes,
        default_server=f"{timing} on-marked-down shutdown-sessions",
        servers=[{"name": n.name, "address": f"{n.address}:{cfg.postgres.port}"} for n in cfg.postgres.nodes],
        rest_api_port=cfg.patroni.rest_api_port,
        check_tls=f"check-ssl verify required ca-file {HAPROXY_TLS_CA} crt {HAPROXY_TLS_CLIENT}",
        read_write_name=READ_WRITE,
        read_only_name=READ_ONLY,
        admin_socket=HAPROXY_SOCKET,
        state_file=HAPROXY_STATE,
    )
    return with_header(text)
