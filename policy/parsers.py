"""Readers for the rendered file formats the policies look into: YAML, haproxy.cfg, keepalived.conf, INI, cron."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Any

import yaml

HOST_RULE_TYPES = ("host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc")
WILDCARDS = frozenset({"", "*", "0.0.0.0", "::", "[::]"})


def load_yaml(content: str) -> dict[str, Any] | None:
    """A YAML mapping, or None when the text is not one."""
    try:
        data = yaml.safe_load(content)
    except yaml.YAMLError:
        return None
    return data if isinstance(data, dict) else None


def dig(data: Any, *keys: str) -> Any:
    """data[k1][k2]... or None where a level is missing."""
    for key in keys:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _words(line: str, comment: str = "#") -> list[str]:
    """Whitespace-separated words of a config line, comment removed; backslash escapes the next character."""
    words, word, escaped, in_word = [], "", False, False
    for char in line:
        if escaped:
            word, escaped, in_word = word + char, False, True
        elif char == "\\":
            escaped, in_word = True, True
        elif char in comment:
            break
        elif char.isspace():
            if in_word:
                words.append(word)
            word, in_word = "", False
        else:
            word, in_word = word + char, True
    if in_word:
        words.append(word)
    return words


@dataclass
class Section:
    """One haproxy.cfg section (global, defaults, frontend, backend, listen) and its keyword lines."""

    kind: str
    name: str
    lines: list[list[str]] = field(default_factory=list)

    def find(self, *prefix: str) -> list[list[str]]:
        """Lines starting with these words."""
        return [line for line in self.lines if line[: len(prefix)] == list(prefix)]


def haproxy_sections(content: str) -> list[Section]:
    """The sections of a haproxy.cfg, escapes resolved (`stats auth a:b\\ c` gives `a:b c`)."""
    sections: list[Section] = []
    for raw in content.splitlines():
        words = _words(raw)
        if not words:
            continue
        if words[0] in {"global", "defaults", "frontend", "backend", "listen", "peers", "resolvers", "userlist"}:
            sections.append(Section(words[0], words[1] if len(words) > 1 else ""))
        elif sections:
            sections[-1].lines.append(words)
    return sections


def split_bind(address: str) -> tuple[str, int] | None:
    """`host:port` (IPv4, `*`, empty host or [IPv6]) -> (host, port); None without a single port."""
    address = re.sub(r"^(ipv4|ipv6)@", "", address)
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def keepalived_instances(content: str) -> dict[str, dict[str, list[str]]]:
    """vrrp_instance name -> keyword -> values (first-level keywords, plus `auth_pass` inside blocks)."""
    instances: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    depth = 0
    for raw in content.splitlines():
        words = _words(raw, comment="#!")
        if not words:
            continue
        if depth == 0 and words[0] == "vrrp_instance" and len(words) > 1:
            current = instances.setdefault(words[1], {})
        elif current is not None and depth >= 1 and words[0] not in "{}":
            current.setdefault(words[0], []).extend(words[1:] or [""])
        depth += raw.count("{") - raw.count("}")
        if depth <= 0:
            current, depth = None, 0
    return instances


def ini_sections(content: str) -> dict[str, dict[str, str]]:
    """An INI file as section -> key -> value; later keys win; `#` and `;` start comments."""
    sections: dict[str, dict[str, str]] = {}
    current = sections.setdefault("", {})
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1].strip(), {})
        elif "=" in line:
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


@dataclass(frozen=True)
class CronEntry:
    """One job line of an /etc/cron.d file."""

    schedule: str
    user: str
    command: str


def cron_entries(content: str) -> list[CronEntry]:
    """The job lines of an /etc/cron.d file (variables and comments skipped)."""
    entries = []
    for raw in content.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or re.match(r"^[A-Za-z_][A-Za-z0-9_]*\s*=", line):
            continue
        if line.startswith("@"):
            parts = line.split(None, 2)
            if len(parts) == 3:
                entries.append(CronEntry(parts[0], parts[1], parts[2]))
            continue
        parts = line.split(None, 6)
        if len(parts) == 7:
            entries.append(CronEntry(" ".join(parts[:5]), parts[5], parts[6]))
    return entries


@dataclass(frozen=True)
class HbaRule:
    """One pg_hba line: connection type, databases, users, address (None for local) and method."""

    line: str
    type: str
    databases: tuple[str, ...]
    users: tuple[str, ...]
    address: str | None
    method: str

    @property
    def network(self) -> bool:
        """A TCP rule (host, hostssl, ...), as opposed to a local socket rule."""
        return self.type in HOST_RULE_TYPES

    def covers(self, source: str) -> bool:
        """True when a connection from `source` (an IP address) matches this rule's address."""
        if self.address in {"all", "0.0.0.0/0", "::/0"}:
            return True
        try:
            return ipaddress.ip_address(source) in ipaddress.ip_network(self.address or "", strict=False)
        except ValueError:
            return False


def hba_rule(line: str) -> HbaRule | None:
    """Parse one pg_hba line; None for blank, comment or malformed lines."""
    words = line.split("#", 1)[0].split()
    if len(words) < 4:
        return None
    kind = words[0]
    if kind == "local":
        return HbaRule(line, kind, tuple(words[1].split(",")), tuple(words[2].split(",")), None, words[3])
    if kind not in HOST_RULE_TYPES or len(words) < 5:
        return None
    address, rest = words[3], words[4:]
    if "/" not in address and rest and re.fullmatch(r"\d+\.\d+\.\d+\.\d+", rest[0]) and len(rest) > 1:
        try:  # address and netmask as two words
            prefix = ipaddress.ip_network(f"0.0.0.0/{rest[0]}").prefixlen
            address, rest = f"{address}/{prefix}", rest[1:]
        except ValueError:
            pass
    return HbaRule(line, kind, tuple(words[1].split(",")), tuple(words[2].split(",")), address, rest[0])


def hba_rules(lines: Any) -> list[HbaRule] | None:
    """Parsed rules of a pg_hba list, or None when it is not a list of strings."""
    if not isinstance(lines, list) or not all(isinstance(x, str) for x in lines):
        return None
    return [rule for rule in (hba_rule(x) for x in lines) if rule is not None]
