"""pulumi-random 4.x (terraform-provider-random): RandomPassword, RandomString, RandomId.

terraform-provider-random internal/provider/resource_password.go, resource_string.go, resource_id.go:
every attribute has a RequiresReplace plan modifier, so any input change replaces; create draws the
``min_*`` characters of each class first, the rest from the union of the enabled classes, then
shuffles. pulumi-random's SDK marks ``result`` (and ``bcryptHash``) of RandomPassword secret.
"""

from __future__ import annotations

import base64
import secrets
from collections.abc import Mapping
from typing import Any

import bcrypt

from local_engine.providers import Context, Diff, Provider, changed_keys, unknown_outputs
from local_engine.state import ResourceState
from local_engine.wire import UnsupportedInputError, as_int, check_keys, make_secret

LOWER = "abcdefghijklmnopqrstuvwxyz"
UPPER = LOWER.upper()
NUMERIC = "0123456789"
DEFAULT_SPECIAL = "!@#$%&*()-_=+[]{}<>:?"

STRING_KEYS = ("length", "special", "upper", "lower", "numeric", "number", "overrideSpecial",
               "minUpper", "minLower", "minNumeric", "minSpecial", "keepers")
ID_KEYS = ("byteLength", "prefix", "keepers")


def random_text(inputs: Mapping[str, Any], where: str) -> str:
    """Generate a password/string honoring length, character classes and minimum counts."""
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


class _AllReplace(Provider):
    """A resource whose every input requires replacement and whose delete only forgets it."""

    keys: tuple[str, ...] = ()
    computed: tuple[str, ...] = ()

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        check_keys(f"{self.type} '{name}'", inputs, self.keys)
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        changed = changed_keys(old.inputs, inputs)
        return Diff(changed=changed, replace=changed)

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        return unknown_outputs(inputs, *self.computed)


class RandomPassword(_AllReplace):
    type = "random:index/randomPassword:RandomPassword"
    source = "terraform-provider-random internal/provider/resource_password.go"
    keys = STRING_KEYS
    computed = ("result", "bcryptHash")

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        result = random_text(inputs, f"random.RandomPassword '{name}'")
        digest = bcrypt.hashpw(result.encode(), bcrypt.gensalt()).decode()
        return "none", {**inputs, "result": make_secret(result), "bcryptHash": make_secret(digest)}


class RandomString(_AllReplace):
    type = "random:index/randomString:RandomString"
    source = "terraform-provider-random internal/provider/resource_string.go"
    keys = STRING_KEYS
    computed = ("result",)

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        result = random_text(inputs, f"random.RandomString '{name}'")
        return result, {**inputs, "result": result}  # not secret, as with the real provider


class RandomId(_AllReplace):
    type = "random:index/randomId:RandomId"
    source = "terraform-provider-random internal/provider/resource_id.go"
    keys = ID_KEYS
    computed = ("b64Url", "b64Std", "hex", "dec")

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        where = f"random.RandomId '{name}'"
        size = as_int(inputs.get("byteLength"), f"{where}.byteLength")
        if size < 1:
            raise UnsupportedInputError(f"{where}: byteLength must be at least 1")
        data = secrets.token_bytes(size)
        prefix = str(inputs.get("prefix") or "")
        b64_url = base64.urlsafe_b64encode(data).decode().rstrip("=")
        return b64_url, {**inputs, "b64Url": prefix + b64_url, "b64Std": prefix + base64.b64encode(data).decode(),
                         "hex": prefix + data.hex(), "dec": prefix + str(int.from_bytes(data, "big"))}


PROVIDERS = (RandomPassword(), RandomString(), RandomId())
