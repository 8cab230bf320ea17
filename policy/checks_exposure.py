"""Who may reach what: pg_hba by role, the width of client networks, HAProxy's source filter."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from typing import Any

if __package__:
    from . import parsers
    from .checks_postgres import hba_lists, patroni_files
    from .inventory import StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import parsers  # type: ignore[no-redef]
    from checks_postgres import hba_lists, patroni_files  # type: ignore[no-redef]
    from inventory import StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]
LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Address words pg_hba takes besides networks; `all`, samenet and a host name could be anyone.
_ANYWHERE = {"all", "samenet"}


def _network(address: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    if address in ("samehost", "localhost"):
        return LOOPBACK
    try:
        return ipaddress.ip_network(address or "", strict=False)
    except ValueError:
        return None


def _within(address: str | None, hosts: Iterable[str]) -> bool:
    """The rule's address admits nothing but loopback or one of `hosts`."""
    network = _network(address)
    if network is None:
        return False
    if network.version == 4 and network.subnet_of(LOOPBACK):  # type: ignore[arg-type]
        return True
    return network.num_addresses == 1 and str(network.network_address) in set(hosts)


def _user(data: dict[str, Any], role: str, default: str) -> str:
    value = parsers.dig(data, "postgresql", "authentication", role, "username")
    return value if isinstance(value, str) and value else default


def check_hba_roles(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """The superuser only over the local socket; replication and rewind only from the PostgreSQL members;
    no network rule that names every role."""
    members = {h for s in view.by_role("postgres") for h in s.hosts}
    for service, path, data in patroni_files(view):
        if data is None:
            continue
        superuser = _user(data, "superuser", "postgres")
        member_roles = {_user(data, "replication", "replicator"), _user(data, "rewind", "rewind")}
        for where, rules in hba_lists(data):
            for rule in rules or []:
                if not rule.network or rule.method == "reject":
                    continue
                if "all" in rule.users or superuser in rule.users:
                    who = "every role, the superuser included" if "all" in rule.users else f"the superuser {superuser}"
                    report(f"{service.label}: {path} {where}: '{rule.line}' admits {who} over the network; the "
                           "superuser connects only over the local socket (peer), and each network rule names "
                           "the roles it is for", service.urn)
                    continue
                outside = sorted(member_roles.intersection(rule.users))
                if outside and not _within(rule.address, members):
                    report(f"{service.label}: {path} {where}: '{rule.line}' admits {', '.join(outside)} from "
                           f"{rule.address}, which is not a PostgreSQL member (members: {', '.join(sorted(members))}); "
                           "replication and pg_rewind connect only from the members", service.urn)


def _too_wide(address: str | None, min_prefix: int) -> bool:
    if address in _ANYWHERE:
        return True
    network = _network(address)
    return network is not None and network.version == 4 and network.prefixlen < min_prefix


def check_client_networks(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """No network pg_hba rule, and no HAProxy source filter, admits a network wider than /minPrefix."""
    min_prefix = int(settings["minPrefix"])
    for service, path, data in patroni_files(view):
        for where, rules in hba_lists(data or {}):
            for rule in rules or []:
                if rule.network and rule.method != "reject" and _too_wide(rule.address, min_prefix):
                    report(f"{service.label}: {path} {where}: '{rule.line}' admits {rule.address}, wider than a "
                           f"/{min_prefix}; list the networks clients connect from (pgha:postgres.client_cidrs)",
                           service.urn)
    for service in view.services:
        for path, content in service.known("haproxy"):
            for section in parsers.haproxy_sections(content):
                for acl in section.find("acl"):
                    wide = [w for w in acl[3:] if acl[2:3] == ["src"] and _too_wide(w, min_prefix)]
                    if wide:
                        report(f"{service.label}: {path} {section.kind} {section.name}: acl {acl[1]} admits "
                               f"{', '.join(wide)}, wider than a /{min_prefix}", service.urn)


def _filters(section: parsers.Section) -> bool:
    """The section rejects connections whose source no `src` acl of it admits."""
    sources = {words[1] for words in section.find("acl") if len(words) > 3 and words[2] == "src"}
    for words in section.find("tcp-request", "connection", "reject"):
        condition = words[3:]
        if condition[:1] == ["unless"] and set(condition[1:]) & sources:
            return True
        if condition[:1] == ["if"] and {f"!{s}" for s in sources} & set(condition[1:]):
            return True
    return False


def check_haproxy_sources(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Every HAProxy listener accepts connections only from listed networks (a `src` acl and a
    `tcp-request connection reject` on its complement)."""
    for service in view.services:
        for path, content in service.known("haproxy"):
            for section in parsers.haproxy_sections(content):
                if section.kind in {"listen", "frontend"} and section.find("bind") and not _filters(section):
                    binds = ", ".join(w[1] for w in section.find("bind") if len(w) > 1)
                    report(f"{service.label}: {path} {section.kind} {section.name} accepts connections on {binds} "
                           "from any source; add `acl clients src NETWORKS` and `tcp-request connection reject "
                           "if !clients` with the client networks and the cluster's own hosts", service.urn)
