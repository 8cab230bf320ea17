"""Plain values out of policy props: proxies and secret wrappers removed, values unknown in a preview marked."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from pulumi_policy import Secret, proxy
from pulumi_policy.proxy import UnknownValueError

CONTAINER: Final = "docker:index/container:Container"
REMOTE_COMMAND: Final = "command:remote:Command"
LOCAL_COMMAND: Final = "command:local:Command"
COMMANDS: Final = (REMOTE_COMMAND, LOCAL_COMMAND)
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
