"""Host firewall checks: every service placed on a host over SSH carries pgha's nftables ruleset, which drops what
it does not accept, accepts the service's own ports, and opens none of them to every address but the front door."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

if __package__:
    from .inventory import Service, StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    from inventory import Service, StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]

# The listeners every client may reach: HAProxy's front door (the virtual IP).
PUBLIC_LISTENERS = ("HAProxy read-write", "HAProxy read-only")
LOOPBACK = ("127.0.0.1", "::1")
_INPUT_DROP = re.compile(r"type filter hook input priority [^;]+;\s*policy drop;")
_ACCEPT = re.compile(r"^\s*(?P<match>.*?)\b(?P<proto>tcp|udp) dport (?P<port>\d+) accept\b")


def accepted(content: str) -> dict[int, list[str]]:
    """TCP port -> what each of its accept rules matches before the port (e.g. "ip saddr { ... }", "" for all)."""
    found: dict[int, list[str]] = {}
    for line in content.splitlines():
        m = _ACCEPT.match(line)
        if m and m["proto"] == "tcp":
            found.setdefault(int(m["port"]), []).append(m["match"].strip())
    return found


def _everywhere(match: str) -> bool:
    return "saddr" not in match


def _problems(service: Service, path: str, content: str) -> list[str]:
    if "table inet pgha" not in content or not _INPUT_DROP.search(content):
        return [f"{path} has no input chain of table inet pgha with `policy drop`: what no rule accepts gets in"]
    if "ct state established,related accept" not in content:
        return [f"{path} does not accept established connections: loading it would cut the deployment's own"]
    rules = accepted(content)
    found = []
    for listener in service.listeners:
        if listener.address in LOOPBACK:
            continue
        matches = rules.get(listener.port)
        if not matches:
            found.append(f"{path} accepts no connection to {listener.what} (port {listener.port}): the cluster's "
                         "own hosts could not reach it")
        elif listener.what not in PUBLIC_LISTENERS and any(_everywhere(m) for m in matches):
            found.append(f"{path} opens {listener.what} (port {listener.port}) to every address; only the hosts "
                         "that need it (and pgha:firewall.admin_from) should reach it")
    return found


def check_host_firewall(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Services on hosts (target ssh) carry pgha's firewall: input policy drop, established connections kept,
    their own ports accepted, none but HAProxy's client ports open to every address."""
    for service in view.services:
        if service.target != "ssh" or service.files is None:
            continue  # containers are reached through their own network; unknown files: a first preview
        rulesets = service.files_of("nftables")
        if not rulesets:
            report(f"{service.label}: its host carries no pgha firewall (an nftables ruleset); every port of the "
                   "host is open to every address that routes to it: set pgha:firewall.enabled: true", service.urn)
        for path, content in rulesets:
            for problem in [] if content is None else _problems(service, path, content):
                report(f"{service.label}: {problem}", service.urn)
