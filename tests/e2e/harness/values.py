"""Small, dependency-free helpers shared by the real-deployment harness.

Everything the Pulumi SDK hands to ``Mocks.new_resource`` arrives in the engine's wire shape:
camelCase property names, numbers as floats and secret values wrapped in the secret signature.
These helpers turn that shape into plain Python values and reject anything unexpected.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.runtime import rpc

#: Label put on every container, network and volume the harness creates; its value is the run id.
RUN_LABEL = "pgha.e2e.run"

SECRET_SIG_KEY: str = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_SIG: str = rpc._special_secret_sig  # "1b47061264138c4ac30d75fd1eb44270"


class HarnessError(RuntimeError):
    """The harness could not (or refused to) create what the program declared."""


class UnsupportedInputError(HarnessError):
    """An input key or value the harness does not implement; it refuses rather than ignore it."""


def is_secret(value: Any) -> bool:
    """True if ``value`` is a secret wrapped in the engine's secret signature."""
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def make_secret(value: Any) -> dict[str, Any]:
    """Wrap ``value`` the way the engine marks a secret output property.

    Returned from ``new_resource`` as part of the state, the SDK resolves the property as a
    secret Output (``rpc.resolve_properties`` unwraps it and sets ``is_secret``).
    """
    return value if is_secret(value) else {SECRET_SIG_KEY: SECRET_SIG, "value": value}


def unwrap(value: Any) -> Any:
    """Recursively strip secret wrappers from a value (dicts and lists included)."""
    if is_secret(value):
        return unwrap(value.get("value"))
    if isinstance(value, dict):
        return {key: unwrap(item) for key, item in value.items()}
    if isinstance(value, list):
        return [unwrap(item) for item in value]
    return value


def check_keys(where: str, inputs: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise naming every key of ``inputs`` that is not in ``allowed`` (``None`` values count too)."""
    unknown = sorted(set(inputs) - set(allowed))
    if unknown:
        raise UnsupportedInputError(
            f"{where}: input(s) {', '.join(unknown)} not supported by the e2e harness; "
            "implement them in tests/e2e/harness or drop them from the program"
        )


def as_int(value: Any, where: str) -> int:
    """Engine numbers are floats; accept only integral ones."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise UnsupportedInputError(f"{where}: expected an integer, got {value!r}")
    return int(value)


def as_str_list(value: Any, where: str) -> list[str]:
    """A list of strings (``None`` gives an empty list)."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise UnsupportedInputError(f"{where}: expected a list of strings, got {value!r}")
    return list(value)


def label_map(items: Any, where: str) -> dict[str, str]:
    """``[{label, value}, ...]`` (pulumi-docker's label list) as a dict."""
    result: dict[str, str] = {}
    for item in items or []:
        check_keys(where, item, ("label", "value"))
        result[str(item["label"])] = str(item.get("value", ""))
    return result


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
            "m": 60_000_000_000, "h": 3_600_000_000_000}


def duration_ns(text: Any, where: str) -> int:
    """Parse a Go duration string ("5s", "1m30s", "500ms", "0") into nanoseconds.

    The docker provider ignores parse errors silently; the harness raises instead.
    """
    if text is None or text == "" or text == "0":
        return 0
    if not isinstance(text, str):
        raise UnsupportedInputError(f"{where}: expected a duration string like '5s', got {text!r}")
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        position = match.end()
    if position != len(text) or position == 0:
        raise UnsupportedInputError(f"{where}: invalid duration {text!r} (use e.g. '5s', '1m30s')")
    return int(total)


def auto_name(logical_name: str) -> str:
    """The engine's auto-naming: logical name plus a random 7-hex-digit suffix."""
    return f"{logical_name}-{secrets.token_hex(4)[:7]}"
