"""Shared rendering helpers: the managed-file header and the strict jinja2 environment."""

from __future__ import annotations

from typing import Any

import jinja2
import yaml

from config.models import Host

HEADER = "Managed by pgha (Pulumi); do not edit: changes are overwritten."

ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("render", "templates"),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
    lstrip_blocks=True,
    autoescape=False,
)


def header(comment: str = "#") -> str:
    """The header as one comment line in a format whose comments start with `comment`."""
    return f"{comment} {HEADER}\n"


def with_header(text: str, comment: str = "#") -> str:
    """Prefix `text` with the header; a leading shebang line stays first."""
    if text.startswith("#!"):
        first, _, rest = text.partition("\n")
        return f"{first}\n{header(comment)}{rest}"
    return header(comment) + text


def render_template(name: str, **ctx: Any) -> str:
    """Render `render/templates/<name>`; an undefined variable is an error, never empty text."""
    return ENV.get_template(name).render(**ctx)


def dump_yaml(data: dict[str, Any]) -> str:
    """YAML text of `data`, keys in insertion order, preceded by the header."""
    return with_header(yaml.safe_dump(data, sort_keys=False, default_flow_style=False, width=1000))


def require_member(host: Host, hosts: list[Host], field: str) -> None:
    """Refuse to render a file for a host that does not have the role the file is for."""
    if host not in hosts:
        raise ValueError(f"node '{host.name}' is not one of {field} ({', '.join(h.name for h in hosts)})")
