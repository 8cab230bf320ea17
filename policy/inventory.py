"""The stack as the policies see it: which service each placement runs (from its component ancestors)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from pulumi_policy import PolicyResource

if __package__:
    from . import extract, parsers
else:  # run by the Pulumi policy host, with only the pack directory on sys.path
    import extract  # type: ignore[no-redef]
    import parsers  # type: ignore[no-redef]

ROLE_COMPONENTS: Final = {
    "pgha:index:EtcdCluster": "etcd",
    "pgha:index:PatroniNode": "postgres",
    "pgha:index:HAProxyPair": "haproxy",
}
# Components that stand for one node (named after it); the others place one service per node they hold.
NODE_COMPONENTS: Final = frozenset({"pgha:index:PatroniNode"})
CLUSTER_COMPONENT: Final = "pgha:index:PostgresCluster"


@dataclass
class Service:
    """One service placement: what runs (role), where (hosts) and the files it writes (None: not known yet)."""

    resource: PolicyResource
    role: str | None
    label: str
    group: str | None  # URN of the component that places it (an etcd cluster, an HAProxy pair, a node)
    cluster: str | None  # URN of the PostgresCluster it belongs to
    hosts: tuple[str, ...]
    files: dict[str, str | None] | None
    props: dict[str, Any] = field(repr=False)

    @property
    def urn(self) -> str:
        return self.resource.urn

    def files_of(self, kind: str) -> list[tuple[str, str | None]]:
        """(path, content or None when unknown) of every file of one kind (see parsers.file_kind)."""
        return [(p, c) for p, c in (self.files or {}).items() if parsers.file_kind(p) == kind]

    def known(self, kind: str) -> list[tuple[str, str]]:
        """(path, content) of the files of one kind whose content is known."""
        return [(p, c) for p, c in self.files_of(kind) if c is not None]


@dataclass
class StackView:
    """The stack as the policies see it: services, generated passwords, and where to report stack findings."""

    stack: str | None
    services: list[Service]
    passwords: set[str]  # known results of the stack's RandomPasswords
    clusters: list[str]
    resources: list[tuple[PolicyResource, dict[str, Any]]] = field(repr=False)

    def by_role(self, role: str) -> list[Service]:
        """Services whose nearest role component is of this role, in natural order of their labels."""
        return sorted((s for s in self.services if s.role == role), key=lambda s: natural(s.label))


def natural(text: str) -> list[Any]:
    """Sort key that orders `etcd-2` before `etcd-10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def stack_of(urn: str) -> str | None:
    """The stack name inside a URN (`urn:pulumi:<stack>::<project>::<type>::<name>`)."""
    head = urn.split("::", 1)[0].split(":")
    return head[2] if len(head) == 3 and head[:2] == ["urn", "pulumi"] else None


def _parent(resource: PolicyResource, index: dict[str, PolicyResource]) -> PolicyResource | None:
    if resource.parent is not None:
        return resource.parent
    urn = getattr(resource.opts, "parent", None) if resource.opts is not None else None
    return index.get(urn) if urn else None


def ancestors(resource: PolicyResource, index: dict[str, PolicyResource]) -> list[PolicyResource]:
    """Parent, grandparent, ... up to the stack (cycles cut)."""
    chain: list[PolicyResource] = []
    seen = {resource.urn}
    current = _parent(resource, index)
    while current is not None and current.urn not in seen:
        chain.append(current)
        seen.add(current.urn)
        current = _parent(current, index)
    return chain


def role_component(resource: PolicyResource, index: dict[str, PolicyResource]) -> PolicyResource | None:
    """The nearest ancestor whose type names a service role."""
    return next((a for a in ancestors(resource, index) if a.resource_type in ROLE_COMPONENTS), None)


def _label(resource: PolicyResource, props: dict[str, Any], component: PolicyResource | None,
           index: dict[str, PolicyResource]) -> str:
    """The node a placement runs on: the container's hostname, else derived from the component names."""
    hostname = extract.text(props.get("hostname"))
    if hostname:
        return hostname
    name = resource.name.removesuffix("-service")
    if component is None:
        return name
    if component.resource_type in NODE_COMPONENTS:
        parent = _parent(component, index)
        prefix = f"{parent.name}-" if parent is not None else ""
        return component.name.removeprefix(prefix) or component.name
    return name.removeprefix(f"{component.name}-") or name


def build(resources: Sequence[PolicyResource]) -> StackView:
    """The stack view of the resources a StackValidationArgs holds."""
    index = {r.urn: r for r in resources}
    everything = [(r, extract.plain(r.props)) for r in resources]
    placements = [(r, p) for r, p in everything if extract.is_service_placement(r.resource_type, r.name)]
    components = {r.urn: role_component(r, index) for r, _ in placements}
    services = []
    for resource, props in placements:
        comp = components[resource.urn]
        services.append(
            Service(
                resource=resource,
                role=ROLE_COMPONENTS[comp.resource_type] if comp is not None else None,
                label=_label(resource, props, comp, index),
                group=comp.urn if comp is not None else None,
                cluster=next((a.urn for a in ancestors(resource, index) if a.resource_type == CLUSTER_COMPONENT), None),
                hosts=extract.host_addresses(resource.resource_type, props),
                files=extract.service_files(resource.resource_type, props),
                props=props,
            )
        )
    passwords = {
        result
        for resource, props in everything
        if resource.resource_type == extract.RANDOM_PASSWORD and (result := extract.text(props.get("result")))
    }
    stacks = [name for name in (stack_of(r.urn) for r in resources) if name]
    return StackView(
        stack=stacks[0] if stacks else None,
        services=sorted(services, key=lambda s: natural(s.label)),  # programs register in no fixed order
        passwords=passwords,
        clusters=[r.urn for r in resources if r.resource_type == CLUSTER_COMPONENT],
        resources=everything,
    )
