"""Guards a new deployment runs before it creates state that could collide with what is already there."""

from __future__ import annotations

import re

from render.common import render_template

_VOLUME_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def render_volume_guard(volume: str, cluster: str, adopt: bool) -> str:
    """POSIX shell that refuses docker volume `volume` when it exists before the stack creates it."""
    for field, value in (("volume", volume), ("cluster", cluster)):
        if not _VOLUME_NAME.match(value):
            raise ValueError(f"{field}: {value!r} is not a docker object name")
    return render_template("volume-guard.sh.j2", volume=volume, cluster=cluster, adopt=adopt)
