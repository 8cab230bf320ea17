"""The engine's wire shape of resource properties, and the errors of the local engine.

Everything the SDK registers arrives as the engine sees it: camelCase property names, numbers as
floats, secret values wrapped in the secret signature and, during a preview, values not known yet as
``Unknown``. These helpers compare, unwrap and wrap such values and reject what is unexpected.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from pulumi.output import Unknown
from pulumi.runtime import rpc

#: Label put on every container, network and volume the local engine creates; its value is the stack's
#: run id. The docker provider adds no label of its own: this one only lets tests clear leftovers.
RUN_LABEL = "pgha.local-engine.run"

SECRET_SIG_KEY: str = rpc._special_sig_key  # "4dabf18193072939515e22adb298388d"
SECRET_SIG: str = rpc._special_secret_sig  # "1b47061264138c4ac30d75fd1eb44270"
UNKNOWN = rpc.UNKNOWN  # what a provider returns for an output it cannot know yet (preview)


class EngineError(RuntimeError):
    """The local engine could not (or refused to) do what the program declared."""


class UnsupportedInputError(EngineError):
    """An input, option or type the local engine does not implement; it refuses rather than ignore it."""


def is_secret(value: Any) -> bool:
    """True if ``value`` is a secret wrapped in the engine's secret signature."""
    return isinstance(value, dict) and value.get(SECRET_SIG_KEY) == SECRET_SIG


def make_secret(value: Any) -> dict[str, Any]:
    """Wrap ``value`` the way the engine marks a secret property."""
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


def contains_secret(value: Any) -> bool:
    """True if ``value`` or anything nested in it is a secret."""
    if is_secret(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


def is_unknown(value: Any) -> bool:
    """True for a value that is not known yet (preview), at any depth."""
    if isinstance(value, Unknown) or value == UNKNOWN:
        return True
    if isinstance(value, dict):
        return any(is_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(is_unknown(v) for v in value)
    return False


def annotate_secrets(outputs: Mapping[str, Any], inputs: Mapping[str, Any],
                     additional: Iterable[str] = ()) -> dict[str, Any]:
    """Outputs marked secret the way the engine stores them.

    pulumi/pulumi pkg/resource/deploy/step_executor.go (continueExecuteStep): a top-level output is
    made secret when it is listed in additionalSecretOutputs or its input of the same name is secret;
    pkg/resource/plugin/provider_plugin.go (annotateSecrets): where input and output are both objects
    the rule recurses, otherwise an output whose input contains a secret anywhere becomes secret whole
    (an upload list with one secret file is a secret list).
    """
    wanted = set(additional)
    result: dict[str, Any] = {}
    for key, value in outputs.items():
        given = inputs.get(key)
        if key in wanted or is_secret(given):
            result[key] = make_secret(unwrap(value))
        elif isinstance(given, dict) and isinstance(value, dict) and not is_secret(value):
            result[key] = annotate_secrets(value, given)
        elif given is not None and contains_secret(given) and not is_secret(value):
            result[key] = make_secret(unwrap(value))
        else:
            result[key] = value
    return result


def check_keys(where: str, inputs: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Raise naming every key of ``inputs`` that is not in ``allowed`` (``None`` values count too)."""
    unknown = sorted(set(inputs) - set(allowed))
    if unknown:
        raise UnsupportedInputError(
            f"{where}: input(s) {', '.join(unknown)} not supported by the local engine; "
            "implement them in local_engine/providers or drop them from the program"
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

    The docker provider ignores parse errors silently; the local engine raises instead.
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


def go_duration(ns: int) -> str:
    """A duration in Go's canonical form (time.Duration.String): 120 s is "2m0s", 0 is "0s"."""
    if ns == 0:
        return "0s"
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return sign + _trim(ns / size) + unit
    hours, rest = divmod(ns, 3_600_000_000_000)
    minutes, rest = divmod(rest, 60_000_000_000)
    seconds = _trim(rest / 1_000_000_000) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{seconds}"
    if minutes:
        return f"{sign}{minutes}m{seconds}"
    return sign + seconds


def _trim(value: float) -> str:
    text = f"{value:.9f}".rstrip("0").rstrip(".")
    return text or "0"


def auto_name(logical_name: str) -> str:
    """The bridge's auto-naming: logical name plus a random 7-hex-digit suffix."""
    return f"{logical_name}-{secrets.token_hex(4)[:7]}"
