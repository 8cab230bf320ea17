"""Read the `pgha:` stack config namespace into a validated ClusterConfig, or fail with clear errors."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from config.models import ClusterConfig

NAMESPACE = "pgha"
# Keys read elsewhere (secrets), never part of the validated model.
SECRET_KEYS = frozenset({"sshPrivateKey"})
_SUBPATH = re.compile(r"^([a-z_][a-z0-9_.\[\]]*): (.*)$", re.S)


class ConfigError(ValueError):
    """Stack configuration is invalid; the message lists every problem with its field path."""


def _describe(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 120 else text[:117] + "..."


def _path(loc: list[str]) -> str:
    return f"{NAMESPACE}:" + ".".join(loc).replace(".[", "[")


def format_errors(error: ValidationError) -> str:
    """One line per problem: `pgha:<path>: <what is wrong> (given: <value>)`."""
    lines = []
    for item in error.errors():
        loc = [f"[{part}]" if isinstance(part, int) else str(part) for part in item["loc"]]
        path = _path(loc)
        message = item["msg"].removeprefix("Value error, ")
        sub = _SUBPATH.match(message)
        if item["type"] == "value_error" and sub:
            loc.append(sub.group(1))
            message = sub.group(2)
            path = _path(loc)
        if item["type"] == "extra_forbidden":
            message = "unknown key; check the spelling against the configuration reference in README.md"
        elif item["type"] == "missing":
            message = "required key is missing"
        # Cross-field messages already quote the offending values; their input is a whole section.
        quiet = item["type"] in {"missing", "value_error"}
        given = "" if quiet else f" (given: {_describe(item['input'])})"
        lines.append(f"{path}: {message}{given}")
    return "invalid stack configuration:\n  " + "\n  ".join(lines)


def parse(raw: Mapping[str, Any]) -> ClusterConfig:
    """Validate a dict of `pgha:` keys (without the namespace) into a ClusterConfig."""
    try:
        return ClusterConfig.model_validate(dict(raw))
    except ValidationError as error:
        raise ConfigError(format_errors(error)) from None


def collect(config_map: Mapping[str, Any]) -> dict[str, Any]:
    """Pick the `pgha:` keys out of a full stack config map, decoding structured (JSON) values."""
    raw: dict[str, Any] = {}
    prefix = f"{NAMESPACE}:"
    for key, value in config_map.items():
        if not key.startswith(prefix) or key[len(prefix):] in SECRET_KEYS:
            continue
        name = key[len(prefix):]
        if isinstance(value, str) and value[:1] in ("{", "["):
            value = json.loads(value)  # structured values arrive JSON-encoded; plain strings stay
        raw[name] = value
    return raw
