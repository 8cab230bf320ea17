"""A stack file's ``config:`` as the engine hands it to a program: a flat map of full keys to strings."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def stack_config(path: Path, overrides: Mapping[str, Any] | None = None, *,
                 project: str) -> tuple[dict[str, str], set[str]]:
    """The engine's flat config map for a stack file, and the keys stored encrypted in it.

    Keys without a namespace get `project`'s; structured values become JSON, scalars the strings
    the engine passes. `overrides` add or replace keys. A `secure:` value cannot be decrypted without
    the stack's secrets provider, so each must be given in `overrides`, or ValueError names it.
    """
    document = {_full_key(k, project): v for k, v in _stack_document(path).items()}
    secure = _encrypted(document)
    merged = {k: v for k, v in document.items() if k not in secure}
    merged.update({_full_key(k, project): v for k, v in (overrides or {}).items()})
    missing = sorted(secure - set(merged))
    if missing:
        raise ValueError(f"{path}: secure config {', '.join(missing)} cannot be decrypted without the stack's "
                         "secrets provider; pass its plaintext (offline check: --secret KEY=VALUE)")
    return {k: _engine_string(v) for k, v in merged.items() if v is not None}, secure


def secure_keys(path: Path, *, project: str) -> set[str]:
    """The keys a stack file holds encrypted (`key: {secure: ...}`), with their namespace."""
    return _encrypted({_full_key(k, project): v for k, v in _stack_document(path).items()})


def _stack_document(path: Path) -> dict[str, Any]:
    return (yaml.safe_load(path.read_text()) or {}).get("config") or {}


def _encrypted(document: Mapping[str, Any]) -> set[str]:
    return {k for k, v in document.items() if isinstance(v, dict) and set(v) == {"secure"}}


def _full_key(key: str, project: str) -> str:
    return key if ":" in key else f"{project}:{key}"


def _engine_string(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value)  # true/false, numbers, lists and maps as the engine serialises them
