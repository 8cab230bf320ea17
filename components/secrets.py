"""Generated credentials: every password of a cluster comes from pulumi-random, never from config."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pulumi
import pulumi_random as random

from catalog import limits
from config.models import Rotation
from render.credentials import Credentials

# Role -> length. Alphanumeric only, so passwords are safe in DSNs, pgpass, YAML and URIs;
# 32 characters of [A-Za-z0-9] carry about 190 bits.
PASSWORD_ROLES: dict[str, int] = {
    "superuser": 32,
    "replication": 32,
    "rewind": 32,
    "app": 32,
    "readonly": 32,
    "restapi": 32,
    "keepalived": limits.VRRP_PASS_LENGTH,  # VRRP PASS authentication only uses 8 characters
    "stats": 32,
    "cipher": 64,
    "etcd": 32,
}


class ClusterSecrets:
    """Declares one RandomPassword per role (children of `parent`) and combines them."""

    def __init__(self, name: str, rotation: Rotation, parent: pulumi.Resource) -> None:
        # A rotation is a change of keepers, which replaces the password (pulumi-random: keepers is
        # ForceNew). Generation 0 sends no keepers, so stacks made before rotation existed keep theirs.
        self.passwords = {
            role: random.RandomPassword(
                f"{name}-{role}-password",
                length=length,
                special=False,
                min_lower=1,
                min_upper=1,
                min_numeric=1,
                keepers={"rotation": str(rotation.generation(role))} if rotation.generation(role) else None,
                opts=pulumi.ResourceOptions(parent=parent, additional_secret_outputs=["result"]),
            )
            for role, length in PASSWORD_ROLES.items()
        }
        self.dcs_id = random.RandomId(
            f"{name}-dcs-namespace", byte_length=4, opts=pulumi.ResourceOptions(parent=parent)
        )
        # By name: Credentials(**values) fails on a role missing from either side instead of shifting
        # passwords between roles.
        values: dict[str, pulumi.Output[str]] = {role: secret(p.result) for role, p in self.passwords.items()}
        values["dcs_namespace"] = self.dcs_id.hex
        self.credentials: pulumi.Output[Credentials] = pulumi.Output.all(**values).apply(
            lambda v: Credentials(**v)
        )

    def password(self, role: str) -> pulumi.Output[str]:
        """The generated password of `role`, always a secret Output."""
        return secret(self.passwords[role].result)


def secret(value: pulumi.Input[str]) -> pulumi.Output[str]:
    """`value` as a secret Output (typed: the SDK's own signature loses the type)."""
    return cast(pulumi.Output[str], pulumi.Output.secret(value))


def render_secret(credentials: pulumi.Output[Credentials], render: Callable[[Credentials], str]) -> pulumi.Output[str]:
    """A file rendered from the credentials: it holds secrets, so it is a secret Output."""
    return secret(credentials.apply(render))


# Stands for every credential where only the shape of a file matters (the change plan compares shapes: what
# a deployment changes in a file apart from its secrets, known before any password exists).
PLACEHOLDERS = Credentials(**{f: "placeholder" + f.replace("_", "") for f in Credentials.__dataclass_fields__})


def shape_of(render: Callable[[Credentials], str]) -> str:
    """The file `render` makes, with a placeholder for each credential: plain, and known in a preview."""
    return render(PLACEHOLDERS)
