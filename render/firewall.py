"""The ssh target's host firewall: one nftables ruleset per host address, the union of the roles it carries."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Final

from catalog.roles import ROLES
from config.models import ClusterConfig, FirewallSettings, Network
from render.common import render_template, with_header
from render.paths import FIREWALL_RULESET, FIREWALL_TABLE

# Who may connect to each port a role listens on (catalog.roles Role.ports), by the sources below. One source
# of truth for the ports: every port field of the role table must have a row here, or nothing renders.
CLUSTER: Final = "the cluster's hosts"  # every host of the stack, and the virtual IP
CLIENT_CIDRS: Final = "postgres.client_cidrs"
ADMINS: Final = "firewall.admin_from"
ACCESS: Final[dict[str, tuple[str, ...]]] = {
    # Replication and pg_rewind between members, HAProxy's pass-through, direct clients (pg_hba's hostssl rules).
    "postgres.port": ("postgres.nodes", "haproxy.nodes", CLIENT_CIDRS),
    # Members ask each other before a failover; HAProxy checks /primary and /replica; the machine running the
    # program reads /primary and /cluster (the rolling order, who joins and leaves).
    "patroni.rest_api_port": ("postgres.nodes", "haproxy.nodes", ADMINS),
    # Patroni's DCS; members reach each other's client URLs (a member joining runs `member add` through them).
    "etcd.client_port": ("etcd.members", "postgres.nodes"),
    "etcd.peer_port": ("etcd.members",),
    # The cluster's front door (the virtual IP): the applications' networks (as HAProxy's own source filter:
    # render/haproxy.client_sources), and the hosts themselves (a handover's probe).
    "haproxy.read_write_port": (CLUSTER, CLIENT_CIDRS),
    "haproxy.read_only_port": (CLUSTER, CLIENT_CIDRS),
    # Plain HTTP behind basic auth: the cluster's hosts and the admins only.
    "haproxy.stats_port": (CLUSTER, ADMINS),
}
COMMENT_MAX: Final = 128  # nftables refuses longer rule comments
VRRP: Final = 112  # IP protocol number: keepalived's unicast adverts between the HAProxy nodes
EVERY_V4: Final = IPv4Network("0.0.0.0/0")
EVERY_V6: Final = IPv6Network("::/0")


@dataclass(frozen=True)
class Opening:
    """One accept rule: `port` (or an IP protocol, `protocol` then names it) from `sources`."""

    what: str
    protocol: str
    port: int | None
    sources: tuple[Network, ...]


def settings(cfg: ClusterConfig) -> FirewallSettings:
    """The firewall settings of a stack that has the firewall; ValueError otherwise."""
    fw = cfg.firewall_settings
    if fw is None or not fw.enabled:
        raise ValueError(f"firewall: the host firewall is rendered only for the ssh target with firewall.enabled "
                         f"(target: {cfg.target})")
    return fw


def ssh_ports(cfg: ClusterConfig) -> list[int]:
    """The ports the SSH rule opens: `firewall.ssh_ports`, or `ssh.port`."""
    fw = settings(cfg)
    if fw.ssh_ports is not None:
        return list(fw.ssh_ports)
    return [cfg.ssh.port if cfg.ssh else 22]


def sources(cfg: ClusterConfig, name: str) -> list[Network]:
    """The networks one source of ACCESS names."""
    fw = settings(cfg)
    if name == CLUSTER:
        hosts: list[Network] = [IPv4Network(h.address) for h in cfg.all_hosts()]
        vip = cfg.haproxy.virtual_ip
        return hosts + ([IPv4Network(vip)] if vip is not None else [])
    if name == CLIENT_CIDRS:
        return list(cfg.postgres.client_cidrs)
    if name == ADMINS:
        return list(fw.admin_from)
    return [IPv4Network(h.address) for h in cfg.value(name)]


def roles_at(cfg: ClusterConfig, address: IPv4Address) -> list[str]:
    """The host lists (role.hosts) that have a host at `address`, in the role table's order."""
    return [field for field, hosts in cfg.roles().items() if any(h.address == address for h in hosts)]


def openings(cfg: ClusterConfig, address: IPv4Address) -> list[Opening]:
    """Every accept rule of the host at `address`: SSH first, then each port of its roles, VRRP, extra rules."""
    fw = settings(cfg)
    carried = roles_at(cfg, address)
    if not carried:
        raise ValueError(f"firewall: {address} is no host of this stack (hosts: "
                         f"{', '.join(str(h.address) for h in cfg.all_hosts())})")
    found = [Opening("SSH (firewall.ssh_from)", "tcp", port, tuple(fw.ssh_from)) for port in ssh_ports(cfg)]
    for role in ROLES.values():
        if role.hosts not in carried:
            continue
        for field in role.ports:
            if field not in ACCESS:
                raise ValueError(f"firewall: no rule says who may connect to {field} (render/firewall.py ACCESS)")
            nets = [n for name in ACCESS[field] for n in sources(cfg, name)]
            found.append(Opening(f"{field} from {', '.join(ACCESS[field])}", "tcp", cfg.value(field), tuple(nets)))
    if "haproxy.nodes" in carried and cfg.haproxy.virtual_ip is not None:
        peers = tuple(IPv4Network(h.address) for h in cfg.haproxy.nodes)
        found.append(Opening("VRRP between the HAProxy nodes", "vrrp", None, peers))
    found += [Opening(f"firewall.allow[{i}]", rule.protocol, rule.port, tuple(rule.sources))
              for i, rule in enumerate(fw.allow)]
    return found


def distinct(networks: Iterable[Network]) -> list[Network]:
    """The networks sorted, without one inside another (nft would merge them itself); neighbours stay apart, so
    the rule names every host as the stack does."""
    nets = sorted(set(networks), key=lambda n: (n.network_address, n.prefixlen))
    return [n for n in nets if not any(o != n and n.subnet_of(o) for o in nets)]  # type: ignore[arg-type]


def _set(networks: Iterable[Network]) -> str:
    items = [str(n) if n.prefixlen < n.max_prefixlen else str(n.network_address) for n in networks]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def nft_rules(opening: Opening) -> list[str]:
    """The nft rule lines of one opening: one per address family that has sources (none: nothing opens)."""
    match = f"ip protocol {VRRP}" if opening.protocol == "vrrp" else f"{opening.protocol} dport {opening.port}"
    if len(opening.what) > COMMENT_MAX:
        raise ValueError(f"firewall: a rule's comment is longer than nftables takes ({COMMENT_MAX}): {opening.what}")
    comment = f'comment "{opening.what}"'
    lines = []
    for family, every, kind in (("ip", EVERY_V4, IPv4Network), ("ip6", EVERY_V6, IPv6Network)):
        nets = distinct(n for n in opening.sources if isinstance(n, kind))
        if not nets:
            continue
        if opening.protocol == "vrrp" and family == "ip6":
            continue  # keepalived here speaks VRRP over IPv4 only
        if every in nets:
            prefix = "meta nfproto ipv4" if family == "ip" else "meta nfproto ipv6"
            lines.append(f"{prefix} {match} accept {comment}")
        else:
            lines.append(f"{family} saddr {_set(nets)} {match} accept {comment}")
    return lines


def accept_rules(cfg: ClusterConfig, address: IPv4Address) -> list[str]:
    """The accept rules of the host at `address`, in nft syntax, in order."""
    return [line for opening in openings(cfg, address) for line in nft_rules(opening)]


def render_firewall(cfg: ClusterConfig, address: IPv4Address) -> str:
    """The nftables ruleset (for `nft -f`) of the host at `address`: pgha's table, replaced atomically, whose
    input chain drops what it does not accept."""
    rules = accept_rules(cfg, address)
    text = render_template("firewall.nft.j2", table=FIREWALL_TABLE, address=str(address),
                           roles=", ".join(roles_at(cfg, address)), rules=rules)
    return with_header(text)


def render_firewall_additions(cfg: ClusterConfig, address: IPv4Address) -> str:
    """The accept rules of the host's ruleset as additions to the table already loaded (for `nft -f`): what a
    deployment opens before its services change, while every source the running cluster still has stays in
    until the ruleset is loaded whole at the deployment's end."""
    rules = accept_rules(cfg, address)
    return with_header("".join(f"add rule {FIREWALL_TABLE} input {rule}\n" for rule in rules))


def render_firewall_unit() -> str:
    """The oneshot unit that loads the ruleset at boot: before the network is up (as Debian's nftables.service,
    so no service is ever reachable unprotected) and after nftables.service (whose `flush ruleset` would
    remove pgha's table)."""
    return with_header(f"""[Unit]
Description=pgha host firewall (nftables table {FIREWALL_TABLE})
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
After=nftables.service
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/sbin/nft -f {FIREWALL_RULESET}

[Install]
WantedBy=sysinit.target
""")
