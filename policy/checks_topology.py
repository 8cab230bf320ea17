"""Topology checks: how many members each service has, VRRP router ids, and ports claimed twice on one host."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from catalog.roles import ROLES

if __package__:
    from . import parsers
    from .inventory import Service, StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import parsers  # type: ignore[no-redef]
    from inventory import Service, StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]


def check_count(view: StackView, role: str, minimum: int, odd: bool, report: Report) -> None:
    """At least `minimum` placements of `role` per cluster (and an odd number when `odd`)."""
    clusters: list[str | None] = list(dict.fromkeys([*view.clusters, *(s.cluster for s in view.by_role(role))]))
    for cluster in clusters or [None]:
        found = [s for s in view.by_role(role) if s.cluster == cluster]
        if len(found) >= minimum and (not odd or len(found) % 2 == 1):
            continue
        listing = f" ({', '.join(s.label for s in found)})" if found else ""
        need = f"at least {minimum}" + (" and an odd number" if odd else "")
        report(f"found {len(found)} {ROLES[role].noun(len(found))}{listing}; {need} are required "
               f"({ROLES[role].why})", cluster)


def _short(urn: str | None) -> str:
    return urn.rsplit("::", 1)[-1] if urn else "?"


def check_router_ids(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """virtual_router_id: one value within a pair (per vrrp_instance), distinct between pairs."""
    pairs: dict[str, list[tuple[Service, str, int]]] = {}
    for service in view.services:
        for path, content in service.known("keepalived"):
            for instance, values in parsers.keepalived_instances(content).items():
                raw = values.get("virtual_router_id", [""])[0]
                if not raw.isdigit() or not 1 <= int(raw) <= 255:
                    state = f"is {raw!r}" if raw else "is missing"
                    report(f"{service.label}: {path} vrrp_instance {instance}: virtual_router_id {state}; "
                           "keepalived needs a number from 1 to 255", service.urn)
                    continue
                pairs.setdefault(service.group or f"vrrp_instance {instance}", []).append(
                    (service, instance, int(raw)))
    owners: dict[int, str] = {}
    for pair, entries in pairs.items():
        by_instance: dict[str, set[int]] = {}
        for _, instance, vrid in entries:
            by_instance.setdefault(instance, set()).add(vrid)
        for instance, ids in by_instance.items():
            if len(ids) > 1:
                seen = ", ".join(f"{s.label}={v}" for s, i, v in entries if i == instance)
                report(f"vrrp_instance {instance} of {_short(pair)} uses different virtual_router_id values "
                       f"({seen}); the nodes of a pair must share one, or each takes the virtual IP for itself",
                       entries[0][0].urn)
        for vrid in sorted({v for _, _, v in entries}):
            if vrid in owners and owners[vrid] != pair:
                first, second = sorted((_short(owners[vrid]), _short(pair)))
                report(f"virtual_router_id {vrid} is used by {first} and {second}; keepalived "
                       "clusters on one network segment need distinct ids, or they fight over each other's "
                       "virtual IP", entries[0][0].urn)
            owners.setdefault(vrid, pair)


@dataclass(frozen=True)
class Claim:
    """A listening socket a service opens: on `host` (the machine), bound to `address`, at `port`."""

    service: Service
    host: str
    address: str
    port: int
    what: str

    def overlaps(self, other: Claim) -> bool:
        wild = parsers.WILDCARDS
        return self.address in wild or other.address in wild or self.address == other.address


def check_ports(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """No two declared listeners on one host's port with overlapping addresses, nor two published ports on the
    machine running the engine (the docker target)."""
    claims: dict[tuple[str, int], list[Claim]] = {}
    for service in view.services:
        host = service.hosts[0] if service.hosts else f"the host of {service.label}"
        for sock in service.listeners:
            what = f"{sock.what} {sock.address}:{sock.port}".strip()
            claims.setdefault((host, sock.port), []).append(Claim(service, host, sock.address, sock.port, what))
        for sock in service.published:
            claim = Claim(service, "the Docker host", sock.address, sock.port,
                          f"published port {sock.address}:{sock.port}")
            claims.setdefault(("the Docker host", sock.port), []).append(claim)
    for (host, port), items in claims.items():
        for i, first in enumerate(items):
            clash = next((c for c in items[i + 1:] if c.overlaps(first) and (c.service, c.what) != (first.service,
                                                                                                     first.what)), None)
            if clash is not None:
                report(f"port {port} on {host} is claimed by {first.service.label} ({first.what}) and by "
                       f"{clash.service.label} ({clash.what}); only one listener gets it, the other service "
                       "fails to start", clash.service.urn)
                break
