"""SSH host keys the ssh target pins: authorized_keys-style lines and OpenSSH known_hosts text (pure: no IO)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# The host key types a pin may have. pulumi-command 1.2.1 asks the host for exactly the pinned key's type
# (provider/pkg/provider/remote/connection.go: HostKeyAlgorithms = [publicKey.Type()], then FixedHostKey), so
# any type the host has works, whatever Go's default order; but an RSA key's type is "ssh-rsa", SHA-1
# signatures, which OpenSSH 8.8 and later (Debian 12 and 13) no longer offers: an RSA pin never connects.
# In this order a known_hosts file's several keys for one host are chosen from.
HOST_KEY_TYPES = ("ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521")
_WHY_NOT = {
    "ssh-rsa": "pulumi-command asks the host for exactly the pinned key's type, for RSA keys the SHA-1 "
               "'ssh-rsa' that OpenSSH 8.8 and later no longer offers, so the connection would always fail",
    "ssh-dss": "OpenSSH no longer has DSA host keys",
}
COLLECT = ("read /etc/ssh/ssh_host_ed25519_key.pub on the host's console, or compare `ssh-keyscan -t ed25519 "
           "HOST` with `ssh-keygen -lf` there (README: Collecting host keys)")


@dataclass(frozen=True)
class HostKey:
    """One host's public key: its type and the base64 of its blob."""

    type: str
    blob: str

    @property
    def line(self) -> str:
        """The key as pulumi-command's `hostKey` takes it (an authorized_keys line without options)."""
        return f"{self.type} {self.blob}"

    @property
    def fingerprint(self) -> str:
        """As `ssh-keygen -lf` prints it: SHA256:<base64 without padding>."""
        digest = hashlib.sha256(base64.b64decode(self.blob)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _strings(blob: bytes) -> list[bytes]:
    """The SSH wire-format strings (uint32 length, bytes) a key blob is made of."""
    parts, at = [], 0
    while at < len(blob):
        if at + 4 > len(blob):
            raise ValueError("the key is truncated")
        size = int.from_bytes(blob[at:at + 4], "big")
        if at + 4 + size > len(blob):
            raise ValueError("the key is truncated")
        parts.append(blob[at + 4:at + 4 + size])
        at += 4 + size
    return parts


def parse_key(text: str) -> HostKey:
    """A host key from `TYPE BASE64 [COMMENT]`; refused unless sshd offers its type and pulumi-command can
    pin it, the base64 decodes and the blob holds a key of the declared type."""
    fields = text.split()
    if len(fields) < 2:
        raise ValueError(f"'{text.strip()[:60]}' is not 'TYPE BASE64 [COMMENT]' (e.g. the content of "
                         "/etc/ssh/ssh_host_ed25519_key.pub)")
    declared, encoded = fields[0], fields[1]
    if declared not in HOST_KEY_TYPES:
        why = _WHY_NOT.get(declared, "not a host key type sshd offers")
        raise ValueError(f"key type {declared}: {why}; pin one of {', '.join(HOST_KEY_TYPES)} "
                         "(/etc/ssh/ssh_host_ed25519_key.pub)")
    try:
        blob = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{declared} key: '{encoded[:24]}...' is not valid base64") from None
    parts = _strings(blob) if blob else []
    inside = parts[0].decode(errors="replace") if parts else ""
    if inside != declared:
        raise ValueError(f"the key is declared {declared} but its base64 holds a {inside or 'nothing'} key; "
                         "copy the whole line of the host's .pub file")
    if declared == "ssh-ed25519":
        valid = len(parts) == 2 and len(parts[1]) == 32
    else:
        valid = len(parts) == 3 and parts[1].decode(errors="replace") == declared.rsplit("-", 1)[1]
    if not valid:
        raise ValueError(f"the {declared} key's base64 does not hold a well-formed {declared} key")
    return HostKey(declared, encoded)


@dataclass(frozen=True)
class KnownHost:
    """One known_hosts line: the host patterns (or a hashed name), its marker, its key or why it is unusable."""

    hosts: str
    marker: str  # "", "@revoked" or "@cert-authority"
    type: str
    key: HostKey | None
    problem: str = ""

    def matches(self, name: str) -> bool:
        """Whether the line is for `name` ("ADDRESS", or "[ADDRESS]:PORT" off port 22), as ssh looks it up."""
        if self.hosts.startswith("|1|"):
            try:
                _, _, salt, digest = self.hosts.split("|")
                expected = base64.b64decode(digest, validate=True)
                mac = hmac.new(base64.b64decode(salt, validate=True), name.encode(), hashlib.sha1).digest()
            except (ValueError, binascii.Error):
                return False
            return hmac.compare_digest(mac, expected)
        matched = False
        for pattern in self.hosts.split(","):
            negated = pattern.startswith("!")
            if _glob(pattern.removeprefix("!")).fullmatch(name.lower()):
                if negated:
                    return False
                matched = True
        return matched


def _glob(pattern: str) -> re.Pattern[str]:
    """An OpenSSH host pattern (`*` and `?` wildcards, case-insensitive) as a regular expression."""
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern.lower()))


def parse_known_hosts(text: str) -> list[KnownHost]:
    """Every key line of an OpenSSH known_hosts file (comments and blank lines skipped)."""
    lines = []
    for raw in text.splitlines():
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else ""
        if len(fields) < 3:
            continue
        hosts, declared = fields[0], fields[1]
        try:
            lines.append(KnownHost(hosts, marker, declared, parse_key(" ".join(fields[1:3]))))
        except ValueError as error:
            lines.append(KnownHost(hosts, marker, declared, None, str(error)))
    return lines


def lookup_name(address: str, port: int) -> str:
    """The name ssh looks a host up by in known_hosts: the address, or `[address]:port` off port 22."""
    return address if port == 22 else f"[{address}]:{port}"


def choose(entries: Iterable[KnownHost], address: str, port: int) -> HostKey | str:
    """The key to pin for `address`: the first of its usable keys in HOST_KEY_TYPES order, or why none is."""
    name = lookup_name(address, port)
    mine = [e for e in entries if e.matches(name)]
    revoked = {e.key for e in mine if e.marker == "@revoked" and e.key is not None}
    usable = [e.key for e in mine if not e.marker and e.key is not None and e.key not in revoked]
    if usable:
        return min(usable, key=lambda k: HOST_KEY_TYPES.index(k.type))
    if not mine:
        return f"no line for {name}"
    others = sorted({e.type for e in mine if not e.marker and e.key is None})
    found = [f"{', '.join(others)} only ({_WHY_NOT.get(others[0], 'not pinnable')})"] if others else []
    found += ["its key is @revoked"] if revoked else []
    found += ["only @cert-authority lines (a pin is one host key, not a CA)"] if any(
        e.marker == "@cert-authority" for e in mine) else []
    return f"{name}: " + "; ".join(found or ["no usable key"])


def pin(hosts: Iterable[tuple[str, str]], port: int, inline: Mapping[str, str],
        known_hosts: tuple[str, str] | None = None) -> dict[str, HostKey]:
    """address -> the key to pin, for every (name, address) of the stack: `inline` (ssh.host_keys) first, then
    `known_hosts` ((path, text) of ssh.known_hosts_file). Raises ValueError (`ssh.<field>: ...`) naming every
    address left without a key."""
    entries = parse_known_hosts(known_hosts[1]) if known_hosts else []
    names: dict[str, list[str]] = {}
    for name, address in hosts:
        names.setdefault(address, []).append(name)
    pinned: dict[str, HostKey] = {}
    missing: list[str] = []
    for address, owners in names.items():
        who = f"{address} ({', '.join(owners)})"
        if address in inline:
            pinned[address] = parse_key(inline[address])
            continue
        found = choose(entries, address, port) if known_hosts else "no key"
        if isinstance(found, HostKey):
            pinned[address] = found
        else:
            missing.append(who if not known_hosts else f"{who}: {found}")
    if missing:
        where = (f"ssh.known_hosts_file: {known_hosts[0]} has no usable key for" if known_hosts
                 else "ssh.host_keys: no key for")
        raise ValueError(
            f"{where} {'; '.join(missing)}. The ssh target checks every host's key before it sends anything (the "
            "passwords, the pgBackRest passphrase and the TLS keys travel on stdin): give each address its public "
            f"key in ssh.host_keys or a line in ssh.known_hosts_file; {COLLECT}")
    return pinned
