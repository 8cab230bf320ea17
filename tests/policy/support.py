"""Hand-built stacks in the form the engine hands to policies, and a runner for one pgha policy."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml
from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policy import pack

PASSWORDS = {
    "superuser": "GenSuperuser0000000000000000000A",
    "replication": "GenReplication00000000000000000B",
    "rewind": "GenRewind0000000000000000000000C",
    "restapi": "GenRestapi000000000000000000000D",
    "stats": "GenStats00000000000000000000000E",
    "keepalived": "GenVrrp1",
    "etcd": "GenEtcd00000000000000000000000F",
    "cipher": "GenCipher" + "0" * 54 + "F",
}
ADDRESSES = {f"etcd-{i}": f"10.0.0.1{i}" for i in range(1, 6)} | {f"pg-{i}": f"10.0.0.2{i}" for i in range(1, 6)} | {
    f"haproxy-{i}": f"10.0.0.3{i}" for i in range(1, 4)}
PATRONI, HAPROXY, KEEPALIVED = "/etc/patroni/patroni.yml", "/etc/haproxy/haproxy.cfg", "/etc/keepalived/keepalived.conf"
PGBACKREST, CRON, ETCD = "/etc/pgbackrest/pgbackrest.conf", "/etc/cron.d/pgha-backup", "/etc/pgha/etcd.yml"
FIREWALL = "/etc/pgha/firewall.nft"


def hba(members: list[str], method: str = "scram-sha-256", clients: tuple[str, ...] = ("10.0.0.31/32",)) -> list[str]:
    """pg_hba lines like the program's: the superuser on the socket, replication from loopback and every member,
    rewind from every member, the application roles from `clients`, all over TLS off loopback."""
    rules = ["local all postgres peer", f"host replication replicator 127.0.0.1/32 {method}"]
    rules += [f"hostssl replication replicator {m}/32 {method}" for m in members]
    rules += [f"hostssl postgres rewind {m}/32 {method}" for m in members]
    return rules + [f"hostssl all app,app_ro {c} {method}" for c in clients]


def patroni_yml(node: str, members: list[str], *, dcs: Mapping[str, Any] | None = None, rules: Any = "default",
                superuser: str = PASSWORDS["superuser"], local_rules: Any = None, ssl: Any = "on") -> str:
    """A patroni.yml for `node`; `rules` None leaves pg_hba out, `dcs` overrides bootstrap.dcs keys."""
    address = ADDRESSES[node]
    postgresql: dict[str, Any] = {"use_pg_rewind": True}
    if rules is not None:
        postgresql["pg_hba"] = hba([ADDRESSES[m] for m in members]) if rules == "default" else rules
    data: dict[str, Any] = {
        "scope": "pgha-dev",
        "name": node,
        "restapi": {"listen": "0.0.0.0:8008", "connect_address": f"{address}:8008",
                    "authentication": {"username": "patroni", "password": PASSWORDS["restapi"]},
                    "certfile": "/etc/patroni/tls/server.crt", "keyfile": "/etc/patroni/tls/server.key",
                    "cafile": "/etc/patroni/tls/ca.crt", "verify_client": "optional",
                    "allowlist": [ADDRESSES[m] for m in members]},
        "etcd3": {"hosts": [f"{ADDRESSES[f'etcd-{i}']}:2379" for i in (1, 2, 3)], "protocol": "https",
                  "cacert": "/etc/patroni/tls/ca.crt", "cert": "/etc/patroni/tls/etcd-client.crt",
                  "key": "/etc/patroni/tls/etcd-client.key", "username": "patroni", "password": PASSWORDS["etcd"]},
        "bootstrap": {"dcs": {"ttl": 20, "loop_wait": 2, "retry_timeout": 9, "synchronous_mode": True,
                              "postgresql": postgresql}},
        "postgresql": {
            "listen": "0.0.0.0:5432",
            "connect_address": f"{address}:5432",
            "parameters": {"ssl": ssl},
            "authentication": {
                "superuser": {"username": "postgres", "password": superuser},
                "replication": {"username": "replicator", "password": PASSWORDS["replication"]},
                "rewind": {"username": "rewind", "password": PASSWORDS["rewind"]},
            },
        },
    }
    data["bootstrap"]["dcs"].update(dcs or {})
    data["bootstrap"]["dcs"] = {k: v for k, v in data["bootstrap"]["dcs"].items() if v is not None}
    if local_rules is not None:
        data["postgresql"]["pg_hba"] = local_rules
    return yaml.safe_dump(data, sort_keys=False)


def haproxy_cfg(node: str, *, stats: str | None = "default", bind: str | None = None, shutdown: bool = True,
                sources: tuple[str, ...] = ("10.0.0.0/24",)) -> str:
    """An haproxy.cfg; `stats` None leaves the stats section out, "" leaves out `stats auth`; `sources` are the
    networks the listeners accept (none: no filter)."""
    lines = ["global", "    maxconn 100", "defaults", "    mode tcp", "    timeout connect 4s"]
    if stats is not None:
        auth = f"stats:{PASSWORDS['stats']}" if stats == "default" else stats
        lines += ["listen stats", "    mode http", f"    bind {bind or ADDRESSES[node] + ':7000'}"]
        lines += [f"    acl clients src {' '.join(sources)}",
                  "    tcp-request connection reject unless clients"] if sources else []
        lines += ["    stats enable", "    stats uri /"] + ([f"    stats auth {auth}"] if auth else [])
    lines += ["listen postgres_read_write", "    bind *:5000"]
    if sources:
        lines += [f"    acl clients src {' '.join(sources)}", "    tcp-request connection reject if !clients"]
    lines += ["    option httpchk",
              "    default-server inter 1s fall 2" + (" on-marked-down shutdown-sessions" if shutdown else "")]
    lines += [f"    server pg-{i} {ADDRESSES[f'pg-{i}']}:5432 check port 8008 check-ssl verify required "
              f"ca-file /etc/haproxy/tls/ca.crt verifyhost pg-{i}" for i in (1, 2, 3)]
    return "\n".join(lines) + "\n"


def keepalived_conf(*, vrid: int | None = 51, auth: str = PASSWORDS["keepalived"], instance: str = "pgha_dev") -> str:
    """A keepalived.conf with one unicast vrrp_instance."""
    lines = ["global_defs {", "    router_id x", "}", f"vrrp_instance {instance} {{", "    state BACKUP",
             "    interface eth0"]
    lines += [f"    virtual_router_id {vrid}"] if vrid is not None else []
    lines += ["    priority 100", "    authentication {", "        auth_type PASS", f"        auth_pass {auth}",
              "    }", "    virtual_ipaddress {", "        10.0.0.30/32 dev eth0", "    }", "}"]
    return "\n".join(lines) + "\n"


def pgbackrest_conf(*, retention: str | None = "2", cipher: str = PASSWORDS["cipher"]) -> str:
    """A pgbackrest.conf; `retention` None leaves repo1-retention-full out."""
    lines = ["[global]", "repo1-path=/var/lib/pgbackrest"]
    lines += [f"repo1-retention-full={retention}"] if retention is not None else []
    lines += ["repo1-cipher-type=aes-256-cbc", f"repo1-cipher-pass={cipher}", "", "[pgha-dev]", "pg1-path=/data"]
    return "\n".join(lines) + "\n"


BACKUP_CRON = "SHELL=/bin/bash\n15 1 * * 0 postgres /usr/local/bin/pgha-backup full\n"


def etcd_yml(node: str) -> str:
    """An etcd config listening on the member's address and loopback."""
    address = ADDRESSES[node]
    tls = {"cert-file": "/etc/pgha/etcd-tls/member.crt", "key-file": "/etc/pgha/etcd-tls/member.key",
           "trusted-ca-file": "/etc/pgha/etcd-tls/ca.crt", "client-cert-auth": True}
    return yaml.safe_dump({"name": node, "listen-peer-urls": f"https://{address}:2380",
                           "listen-client-urls": f"https://{address}:2379,https://127.0.0.1:2379",
                           "initial-advertise-peer-urls": f"https://{address}:2380",
                           "advertise-client-urls": f"https://{address}:2379",
                           "client-transport-security": tls,
                           "peer-transport-security": {**tls, "allowed-cn": ["pgha etcd member"]}})


def healthy_files(etcd: int = 3, postgres: int = 3, haproxy: int = 2) -> dict[str, dict[str, str | None]]:
    """label -> path -> content of a compliant cluster."""
    members = [f"pg-{i}" for i in range(1, postgres + 1)]
    files: dict[str, dict[str, str | None]] = {f"etcd-{i}": {ETCD: etcd_yml(f"etcd-{i}")} for i in range(1, etcd + 1)}
    for node in members:
        files[node] = {PATRONI: patroni_yml(node, members), PGBACKREST: pgbackrest_conf(), CRON: BACKUP_CRON}
    for i in range(1, haproxy + 1):
        files[f"haproxy-{i}"] = {HAPROXY: haproxy_cfg(f"haproxy-{i}"), KEEPALIVED: keepalived_conf()}
    return files


def _opts(parent: PolicyResource | None) -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], parent.urn if parent else None)


class StackBuilder:
    """Collects resources with URNs, parents and engine-form (camelCase, proxied) props."""

    def __init__(self, stack: str = "dev", resources: list[PolicyResource] | None = None) -> None:
        """A new stack, or more resources for an existing list (whose first resource is the stack)."""
        self.stack = stack
        self.resources: list[PolicyResource] = resources if resources is not None else []
        self.root = self.resources[0] if self.resources else self.add("pulumi:pulumi:Stack", f"pgha-{stack}", {}, None)

    def add(self, type_: str, name: str, props: Mapping[str, Any], parent: PolicyResource | None) -> PolicyResource:
        """A resource whose URN carries its parent's type, as the engine makes it."""
        qualified = f"{parent.urn.split('::')[2]}${type_}" if parent and parent is not self.root else type_
        urn = f"urn:pulumi:{self.stack}::pgha::{qualified}::{name}"
        resource = PolicyResource(type_, unknown_checking_proxy(dict(props)), urn, name, _opts(parent), None, parent,
                                  [], {})
        self.resources.append(resource)
        return resource


FILE_KINDS = {PATRONI: "patroni", HAPROXY: "haproxy", KEEPALIVED: "keepalived", PGBACKREST: "pgbackrest",
              CRON: "cron", ETCD: "etcd", FIREWALL: "nftables"}
ROLE_OF = {"etcd": "etcd", "pg": "postgres", "haproxy": "haproxy"}
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's sentinel for a value not known yet
Sockets = list[tuple[str, int, str]]


def default_listeners(label: str) -> Sockets:
    """What the program declares for a service of this label's role."""
    address, role = ADDRESSES[label], ROLE_OF[label.rsplit("-", 1)[0]]
    return {"etcd": [(address, 2379, "etcd client"), ("127.0.0.1", 2379, "etcd client"), (address, 2380, "etcd peer")],
            "postgres": [("0.0.0.0", 8008, "Patroni REST API"), ("0.0.0.0", 5432, "PostgreSQL")],
            "haproxy": [(address, 7000, "HAProxy stats"), ("0.0.0.0", 5000, "HAProxy read-write"),
                        ("0.0.0.0", 5001, "HAProxy read-only")]}[role]


def manifest(label: str, content: Mapping[str, str | None], target: str, listeners: Sockets | None = None,
             published: Sockets | None = None) -> dict[str, Any]:
    """The properties of the service manifest for `label` (catalog/manifest.py), as the engine hands them over."""
    return {"cluster": "pgha-dev", "role": ROLE_OF[label.rsplit("-", 1)[0]], "node": label, "address": ADDRESSES[label],
            "target": target,
            "listeners": [{"address": a, "port": float(p), "what": w}
                          for a, p, w in (default_listeners(label) if listeners is None else listeners)],
            "published": [{"address": a, "port": float(p), "what": w} for a, p, w in published or []],
            "files": [{"path": path, "mode": "0600", "owner": "root", "kind": FILE_KINDS.get(path, ""),
                       "content": UNKNOWN if text is None else text} for path, text in content.items()]}


def build_stack(files: Mapping[str, Mapping[str, str | None]], *, stack: str = "dev", target: str = "docker",
                passwords: Mapping[str, str] | None = None, extra_env: list[str] | None = None,
                listeners: Mapping[str, Sockets] | None = None,
                published: Mapping[str, Sockets] | None = None) -> list[PolicyResource]:
    """A pgha stack: the cluster, role components and, per label, the resource that runs it (a container or a
    remote command) and its manifest declaring `files` (None content: not known yet)."""
    b = StackBuilder(stack)
    cluster = b.add("pgha:index:PostgresCluster", f"pgha-{stack}", {}, b.root)
    for role, value in (passwords if passwords is not None else PASSWORDS).items():
        b.add("random:index/randomPassword:RandomPassword", f"pgha-{stack}-{role}-password",
              {"length": float(len(value)), "result": value}, cluster)
    groups = {"etcd": b.add("pgha:index:EtcdCluster", f"pgha-{stack}-etcd", {}, cluster),
              "haproxy": b.add("pgha:index:HAProxyGroup", f"pgha-{stack}-haproxy", {}, cluster)}
    for label, content in files.items():
        kind = label.rsplit("-", 1)[0]
        parent = groups.get(kind) or b.add("pgha:index:PatroniNode", f"pgha-{stack}-{label}", {}, cluster)
        name = f"{parent.name}-{label}" if kind != "pg" else f"{parent.name}-patroni"
        if target == "docker":
            b.add("docker:index/container:Container", name,
                  {"hostname": label, "envs": list(extra_env or []),
                   "networksAdvanced": [{"name": "n", "ipv4Address": ADDRESSES[label]}]}, parent)
        else:
            b.add("command:remote:Command", f"{name}-service",
                  {"create": "bash -s create", "stdin": "set -eu", "connection": {"host": ADDRESSES[label]}}, parent)
        b.add("pgha:index:ServiceManifest", f"{name}-manifest",
              manifest(label, content, target, (listeners or {}).get(label), (published or {}).get(label)), parent)
    return b.resources


def policy(name: str) -> Any:
    """The pack's policy of this name."""
    return next(p for p in pack.POLICIES if p.name == name)


def violations(name: str, resources: list[PolicyResource], config: Mapping[str, Any] | None = None) -> list[
        tuple[str, str | None]]:
    """(message, urn) of every violation one policy reports over the resources."""
    found: list[tuple[str, str | None]] = []

    def collect(message: str, urn: str | None = None) -> None:
        found.append((message, urn))

    chosen = policy(name)
    if isinstance(chosen, ResourceValidationPolicy):
        for r in resources:
            args = ResourceValidationArgs(r.resource_type, r.props, r.urn, r.name, r.opts, None, config)
            chosen.validate(args, lambda message, _urn=None, about=r.urn: collect(message, about))
    else:
        chosen.validate(StackValidationArgs(resources, config), collect)
    return found


def messages(name: str, resources: list[PolicyResource], config: Mapping[str, Any] | None = None) -> str:
    """All violation messages of one policy, one per line."""
    return "\n".join(m for m, _ in violations(name, resources, config))
