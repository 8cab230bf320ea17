"""Real random values for pulumi-random resources, following terraform-provider-random's rules.

RandomPassword/RandomString: the ``min_*`` characters of each class are drawn first, the rest
from the union of the enabled classes, then the whole is shuffled. ``override_special`` replaces
the default special set. RandomId: ``byte_length`` random bytes in several encodings.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import bcrypt

from .values import UnsupportedInputError, as_int, check_keys, make_secret

LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()
NUMERIC = "0123456789"
DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"

STRING_KEYS = ("length", "special", "upper", "lower", "numeric", "number", "overrideSpecial",
               "minUpper", "minLower", "minNumeric", "minSpecial", "keepers")
ID_KEYS = ("byteLength", "prefix", "keepers")


def random_text(inputs: Mapping[str, Any], where: str) -> str:
    """Generate a password/string honoring length, character classes and minimum counts."""
    check_keys(where, inputs, STRING_KEYS)
    if "length" not in inputs:
        raise UnsupportedInputError(f"{where}: 'length' is required")
    length = as_int(inputs["length"], f"{where}.length")
    special_set = inputs.get("overrideSpecial") or DEFAULT_SPECIAL
    numeric = bool(inputs.get("numeric", True)) and bool(inputs.get("number", True))
    classes = [
        (UPPER, bool(inputs.get("upper", True)), as_int(inputs.get("minUpper", 0), f"{where}.minUpper")),
        (LOWER, bool(inputs.get("lower", True)), as_int(inputs.get("minLower", 0), f"{where}.minLower")),
        (NUMERIC, numeric, as_int(inputs.get("minNumeric", 0), f"{where}.minNumeric")),
        (special_set, bool(inputs.get("special", True)),
         as_int(inputs.get("minSpecial", 0), f"{where}.minSpecial")),
    ]
    required = sum(minimum for _, _, minimum in classes)
    if length < 1 or length < required:
        raise UnsupportedInputError(f"{where}: length {length} is below 1 or the sum of min_* ({required})")
    pool = "".join(chars for chars, enabled, _ in classes if enabled)
    if length > required and not pool:
        raise UnsupportedInputError(f"{where}: every character class is disabled")
    chars = [secrets.choice(charset) for charset, _, minimum in classes for _ in range(minimum)]
    chars += [secrets.choice(pool) for _ in range(length - required)]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


def password_state(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """RandomPassword outputs: ``result`` and ``bcryptHash``, both marked secret like the engine does."""
    result = random_text(inputs, where)
    digest = bcrypt.hashpw(result.encode(), bcrypt.gensalt()).decode()
    return {**inputs, "result": make_secret(result), "bcryptHash": make_secret(digest)}


def string_state(inputs: Mapping[str, Any], where: str) -> dict[str, Any]:
    """RandomString outputs: ``result`` (not secret, as with the real provider)."""
    return {**inputs, "result": random_text(inputs, where)}


def random_id(inputs: Mapping[str, Any], where: str) -> tuple[str, dict[str, Any]]:
    """RandomId: the id is the unpadded URL-safe base64; ``prefix`` prefixes every encoding."""
    check_keys(where, inputs, ID_KEYS)
    size = as_int(inputs.get("byteLength"), f"{where}.byteLength")
    if size < 1:
        raise UnsupportedInputError(f"{where}: byteLength must be at least 1")
    data = secrets.token_bytes(size)
    prefix = str(inputs.get("prefix") or "")
    b64_url = base64.urlsafe_b64encode(data).decode().rstrip("=")
    state = {
        **inputs,
        "b64Url": prefix + b64_url,
        "b64Std": prefix + base64.b64encode(data).decode(),
        "hex": prefix + data.hex(),
        "dec": prefix + str(int.from_bytes(data, "big")),
    }
    return b64_url, state
