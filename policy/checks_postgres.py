"""PostgreSQL-node checks on the rendered patroni.yml, pgbackrest.conf and backup schedule."""

from __future__ import annotations

import fnmatch
import ipaddress
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from catalog.roles import POSTGRES

if __package__:
    from . import parsers
    from .inventory import Service, StackView
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import parsers  # type: ignore[no-redef]
    from inventory import Service, StackView  # type: ignore[no-redef]

Report = Callable[[str, str | None], None]

# Patroni's values for keys left out of bootstrap.dcs (docs: "Dynamic Configuration Settings").
PATRONI_DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10}
LOOPBACK_V4, LOOPBACK_V6 = ipaddress.IPv4Network("127.0.0.0/8"), ipaddress.IPv6Network("::1/128")
HBA_PLACES = (("bootstrap.dcs.postgresql.pg_hba", ("bootstrap", "dcs", "postgresql", "pg_hba")),
              ("postgresql.pg_hba", ("postgresql", "pg_hba")))


def patroni_files(view: StackView) -> Iterator[tuple[Service, str, dict[str, Any] | None]]:
    """(service, path, parsed patroni.yml or None when it is not a YAML mapping) for every known patroni.yml."""
    for service in view.services:
        for path, content in service.known("patroni"):
            yield service, path, parsers.load_yaml(content)


def _whole(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def check_timing(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """ttl, loop_wait and retry_timeout at or above the minimums, and loop_wait + 2*retry_timeout <= ttl."""
    minimums = {"ttl": settings["minTtl"], "loop_wait": settings["minLoopWait"],
                "retry_timeout": settings["minRetryTimeout"]}
    for service, path, data in patroni_files(view):
        if data is None:
            report(f"{service.label}: {path} is not a YAML mapping; Patroni cannot read it", service.urn)
            continue
        dcs = parsers.dig(data, "bootstrap", "dcs")
        dcs = dcs if isinstance(dcs, dict) else {}
        values: dict[str, int] = {}
        problems = []
        for key, default in PATRONI_DEFAULTS.items():
            value = _whole(dcs.get(key, default))
            if value is None:
                problems.append(f"{key} is {dcs.get(key)!r}, not a whole number of seconds")
                continue
            values[key] = value
            if value < int(minimums[key]):
                problems.append(f"{key} {value} is below the minimum {int(minimums[key])}")
        if len(values) == 3:
            ttl, loop, retry = values["ttl"], values["loop_wait"], values["retry_timeout"]
            if loop + 2 * retry > ttl:
                problems.append(f"loop_wait + 2*retry_timeout = {loop} + 2*{retry} = {loop + 2 * retry} exceeds "
                                f"ttl {ttl}")
        if problems:
            report(f"{service.label}: {path} bootstrap.dcs: {'; '.join(problems)} (Patroni raises values under its "
                   "minimums and silently adjusts timing that breaks loop_wait + 2*retry_timeout <= ttl, so what "
                   "would run is not what was written)", service.urn)


def hba_lists(data: dict[str, Any]) -> list[tuple[str, list[parsers.HbaRule] | None]]:
    """(where, rules) for each pg_hba list patroni.yml holds; rules None when it is not a list of lines."""
    return [(where, parsers.hba_rules(parsers.dig(data, *keys)))
            for where, keys in HBA_PLACES if parsers.dig(data, *keys) is not None]


def check_hba_methods(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """No forbidden method (trust, password, md5) on a network (host*) pg_hba rule; some pg_hba present."""
    forbidden = {str(m) for m in settings["forbiddenMethods"]}
    for service, path, data in patroni_files(view):
        if data is None:
            continue
        lists = hba_lists(data)
        if not lists:
            report(f"{service.label}: {path} has no pg_hba rules (neither bootstrap.dcs.postgresql.pg_hba nor "
                   "postgresql.pg_hba); PostgreSQL would keep initdb's default pg_hba.conf, which trusts local "
                   "TCP connections without a password", service.urn)
        for where, rules in lists:
            if rules is None:
                report(f"{service.label}: {path} {where} is not a list of pg_hba lines", service.urn)
                continue
            weak = [r for r in rules if r.network and r.method in forbidden]
            if weak:
                shown = "; ".join(f"'{r.line}'" for r in weak)
                report(f"{service.label}: {path} {where} allows {', '.join(sorted({r.method for r in weak}))} over "
                       f"the network: {shown}; use scram-sha-256 (forbidden on host rules: "
                       f"{', '.join(sorted(forbidden))})", service.urn)


def check_tls(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """PostgreSQL serves TLS (ssl on) and every network pg_hba rule beyond loopback demands it (hostssl)."""
    for service, path, data in patroni_files(view):
        if data is None:
            continue
        ssl = next((v for v in (parsers.dig(data, "postgresql", "parameters", "ssl"),
                                parsers.dig(data, "bootstrap", "dcs", "postgresql", "parameters", "ssl"))
                    if v is not None), None)
        if not _on(ssl):
            state = "not set (PostgreSQL's default is off)" if ssl is None else f"{ssl!r}"
            report(f"{service.label}: {path} postgresql.parameters.ssl is {state}; passwords and data would cross "
                   "the network in plain text: turn ssl on with a certificate and key", service.urn)
        for where, rules in hba_lists(data):
            plain = [r for r in rules or [] if r.network and r.type in ("host", "hostnossl") and not _loopback(r)
                     and r.method != "reject"]
            if plain:
                shown = "; ".join(f"'{r.line}'" for r in plain)
                report(f"{service.label}: {path} {where} admits connections without TLS from beyond loopback: "
                       f"{shown}; use hostssl", service.urn)


def _on(value: Any) -> bool:
    return value is True or str(value).strip().lower() in {"on", "true", "yes", "1"}


def _loopback(rule: parsers.HbaRule) -> bool:
    if rule.address in ("samehost", "localhost"):
        return True
    try:
        network = ipaddress.ip_network(rule.address or "", strict=False)
    except ValueError:
        return False
    return network.subnet_of(LOOPBACK_V4) if network.version == 4 else network.subnet_of(LOOPBACK_V6)


def _admits(rules: list[parsers.HbaRule], user: str | None, source: str) -> bool:
    """The first replication rule matching a connection from `source` accepts it (pg_hba is first-match)."""
    for rule in rules:
        if not rule.network or "replication" not in rule.databases or not rule.covers(source):
            continue
        if user is not None and user not in rule.users and "all" not in rule.users:
            continue
        return rule.method != "reject"
    return False


def check_replication_rules(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """A replication rule for 127.0.0.1 and for the address of every PostgreSQL node, on every node."""
    files: list[tuple[Service, str, dict[str, Any]]] = [(s, p, d) for s, p, d in patroni_files(view) if d is not None]
    members = {h for s in view.by_role("postgres") for h in s.hosts}
    for _, _, data in files:
        connect = parsers.split_bind(str(parsers.dig(data, "postgresql", "connect_address") or ""))
        if connect is not None:
            members.add(connect[0])
    required = ["127.0.0.1", *sorted(members - {"127.0.0.1"})]
    for service, path, data in files:
        user = parsers.dig(data, "postgresql", "authentication", "replication", "username")
        user = user if isinstance(user, str) else None
        local = parsers.dig(data, "postgresql", "pg_hba")
        rules = parsers.hba_rules(local if local is not None else parsers.dig(data, *HBA_PLACES[0][1])) or []
        missing = [source for source in required if not _admits(rules, user, source)]
        if missing:
            who = user or "<replication user>"
            report(f"{service.label}: {path} has no pg_hba rule admitting replication as {who} from "
                   f"{', '.join(missing)}; every member streams from the leader over its own address, and a "
                   "rejoining former primary reads its timeline over 127.0.0.1 (without it pg_rewind never runs)",
                   service.urn)


def is_production(stack: str | None, patterns: list[str]) -> bool:
    """True when the stack name matches one of the productionStacks patterns (shell-style, case-sensitive)."""
    return stack is not None and any(fnmatch.fnmatchcase(stack, str(p)) for p in patterns)


def _synchronous(mode: Any) -> bool:
    return mode is True or (isinstance(mode, str) and mode.strip().lower() in {"on", "true", "yes", "quorum"})


def check_synchronous(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """bootstrap.dcs.synchronous_mode on (true, on, or quorum) for stacks that count as production."""
    patterns = [str(p) for p in settings["productionStacks"]]
    if not is_production(view.stack, patterns):
        return
    for service, path, data in patroni_files(view):
        if data is None:
            continue
        mode = parsers.dig(data, "bootstrap", "dcs", "synchronous_mode")
        if not _synchronous(mode):
            state = "not set (Patroni's default is off)" if mode is None else f"{mode!r}"
            report(f"{service.label}: {path} bootstrap.dcs.synchronous_mode is {state}; stack '{view.stack}' counts "
                   f"as production (productionStacks: {', '.join(patterns)}), where a failover must not lose "
                   "acknowledged commits: set synchronous_mode to on, strict or quorum", service.urn)


def check_backups(view: StackView, settings: Mapping[str, Any], report: Report) -> None:
    """Every PostgreSQL node carries a pgbackrest.conf with repo1-retention-full and a cron file that backs up."""
    minimum = int(settings["minRetentionFull"])
    for service in view.services:
        if service.files is None or not (service.role == POSTGRES.name or service.files_of("patroni")):
            continue
        problems = []
        configs, crons = service.files_of("pgbackrest"), service.files_of("cron")
        if not configs:
            problems.append("no pgbackrest.conf")
        for path, content in configs:
            if content is None:
                continue
            values = [s["repo1-retention-full"] for s in parsers.ini_sections(content).values()
                      if "repo1-retention-full" in s]
            if not values:
                problems.append(f"{path} sets no repo1-retention-full (pgBackRest then expires no backup and the "
                                "repository grows until its disk is full)")
            elif not values[-1].isdigit() or int(values[-1]) < minimum:
                problems.append(f"{path} repo1-retention-full is {values[-1]!r}; at least {minimum} is required")
        if not crons:
            problems.append("no backup schedule (no file in /etc/cron.d)")
        for path, content in crons:
            if content is not None and not any("backup" in e.command for e in parsers.cron_entries(content)):
                problems.append(f"{path} schedules no backup")
        if problems:
            report(f"{service.label}: {'; '.join(problems)}", service.urn)
