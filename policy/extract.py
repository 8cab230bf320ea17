"""Plain values out of policy props, and the rendered files a service placement writes to its host."""

from __future__ import annotations

import base64
import binascii
import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any, Final

from pulumi_policy import Secret, proxy
from pulumi_policy.proxy import UnknownValueError

CONTAINER: Final = "docker:index/container:Container"
REMOTE_COMMAND: Final = "command:remote:Command"
RANDOM_PASSWORD: Final = "random:index/randomPassword:RandomPassword"

# The engine's sentinels for values not known yet (during `pulumi preview`), one per kind of value.
UNKNOWN_SENTINELS: Final = frozenset(
    {
        proxy.UNKNOWN_ARCHIVE_VALUE,
        proxy.UNKNOWN_ARRAY_VALUE,
        proxy.UNKNOWN_ASSET_VALUE,
        proxy.UNKNOWN_BOOLEAN_VALUE,
        proxy.UNKNOWN_NUMBER_VALUE,
        proxy.UNKNOWN_OBJECT_VALUE,
        proxy.UNKNOWN_STRING_VALUE,
    }
)


class _Unknown:
    """A value the engine does not know yet (during `pulumi preview`)."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN: Final = _Unknown()

# How targets/ssh.py embeds a file in the converge script it feeds to `bash -s` on stdin.
_SSH_FILE = re.compile(
    r"base64 -d > \"\$tmp\" <<'PGHA_EOF'\n(?P<data>[A-Za-z0-9+/=\n]*?)\n?PGHA_EOF\n"
    r"(?:(?!PGHA_EOF).)*?install -D -m (?P<mode>\S+) -o (?P<owner>\S+) -g \S+ \"\$tmp\" (?P<path>[^\n]+)",
    re.S,
)


def is_unknown(value: Any) -> bool:
    """True for a value that is not known during preview (our marker or the engine's sentinel)."""
    return value is UNKNOWN or (isinstance(value, str) and value in UNKNOWN_SENTINELS)


def plain(value: Any) -> Any:
    """`value` as plain dicts, lists and scalars: proxies and secret wrappers removed, unknowns as UNKNOWN."""
    if isinstance(value, Secret):
        return plain(value.value)
    if isinstance(value, str):
        return UNKNOWN if value in UNKNOWN_SENTINELS else value
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for key in value:
            try:
                out[str(key)] = plain(value[key])
            except UnknownValueError:
                out[str(key)] = UNKNOWN
        return out
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        items: list[Any] = []
        for index in range(len(value)):
            try:
                items.append(plain(value[index]))
            except UnknownValueError:
                items.append(UNKNOWN)
        return items
    return value


def text(value: Any) -> str | None:
    """A string value, or None when it is unknown or not a string."""
    return value if isinstance(value, str) and not is_unknown(value) else None


def strings(value: Any) -> list[str]:
    """Every known string leaf of a plain value, depth first."""
    if isinstance(value, str):
        return [] if is_unknown(value) else [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in strings(v)]
    return []


def is_service_placement(resource_type: str, name: str) -> bool:
    """A resource that runs one service on one host: a container, or an ssh target's `-service` command."""
    return resource_type == CONTAINER or (resource_type == REMOTE_COMMAND and name.endswith("-service"))


def container_files(props: dict[str, Any]) -> dict[str, str | None]:
    """Path -> content of a container's uploads; None where the content is unknown or not inline."""
    uploads = props.get("uploads")
    if not isinstance(uploads, list):
        return {}
    files: dict[str, str | None] = {}
    for upload in uploads:
        if not isinstance(upload, dict) or not isinstance(upload.get("file"), str):
            continue
        content = upload.get("content")
        if isinstance(content, str) and not is_unknown(content):
            files[upload["file"]] = content
        elif isinstance(upload.get("contentBase64"), str) and not is_unknown(upload["contentBase64"]):
            files[upload["file"]] = _b64(upload["contentBase64"])
        else:
            files[upload["file"]] = None
    return files


def script_files(script: str) -> dict[str, str | None]:
    """Path -> content of every file a converge script writes (base64 heredoc, then `install`)."""
    files: dict[str, str | None] = {}
    for match in _SSH_FILE.finditer(script):
        try:
            path = shlex.split(match.group("path"))[0]
        except (ValueError, IndexError):
            continue
        files[path] = _b64(match.group("data").replace("\n", ""))
    return files


def service_files(resource_type: str, props: dict[str, Any]) -> dict[str, str | None] | None:
    """The files a placement writes, or None when they cannot be known yet (an unknown ssh script)."""
    if resource_type == CONTAINER:
        return container_files(props)
    stdin = props.get("stdin")
    if stdin is None:
        return {}
    script = text(stdin)
    return None if script is None else script_files(script)


def _b64(data: str) -> str | None:
    try:
        return base64.b64decode(data, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None


def host_addresses(resource_type: str, props: dict[str, Any]) -> tuple[str, ...]:
    """The addresses that identify a placement's host: container IPs, or the ssh connection's host."""
    if resource_type == CONTAINER:
        networks = props.get("networksAdvanced")
        found = [
            n["ipv4Address"]
            for n in (networks if isinstance(networks, list) else [])
            if isinstance(n, dict) and text(n.get("ipv4Address"))
        ]
        return tuple(found)
    connection = props.get("connection")
    host = text(connection.get("host")) if isinstance(connection, dict) else None
    return (host,) if host else ()


def published_ports(props: dict[str, Any]) -> list[tuple[str, int]]:
    """(host address, external port) a container publishes on the Docker engine's host."""
    ports = props.get("ports")
    found = []
    for port in ports if isinstance(ports, list) else []:
        if not isinstance(port, dict):
            continue
        external = port.get("external", port.get("internal"))
        if isinstance(external, int | float) and not isinstance(external, bool):
            found.append((text(port.get("ip")) or "0.0.0.0", int(external)))
    return found
