"""The stack as the policies see it: the services the manifests declare (catalog/manifest.py), and the rest."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import PolicyResource

from catalog.manifest import SERVICE_MANIFEST
from catalog.roles import CLUSTER_COMPONENT

if __package__:
    from . import extract
else:  # run by the Pulumi policy host, with only the pack directory (and the project) on sys.path
    import extract  # type: ignore[no-redef]



@dataclass(frozen=True)
class File:
    """A file a service installs; `content` None while it is not known (a first preview)."""

    path: str
    kind: str
    mode: str
    owner: str
    content: str | None


@dataclass(frozen=True)
class Listener:
    """A socket: bound to `address` ("0.0.0.0": every address) at `port`."""

    address: str
    port: int
    what: str


@dataclass
class Service:
    """One placed service as its manifest declares it."""

    resource: PolicyResource  # the manifest
    role: str | None
    label: str  # the node's name
    group: str | None  # URN of the component that placed it (an etcd cluster, an HAProxy group, a node)
    cluster: str | None  # URN of the PostgresCluster it belongs to
    hosts: tuple[str, ...]
    files: list[File] | None  # None when the manifest's file list is not known yet
    listeners: list[Listener] = field(default_factory=list)
    published: list[Listener] = field(default_factory=list)
    target: str | None = None  # "docker" or "ssh": who placed it

    @property
    def urn(self) -> str:
        return self.resource.urn

    def files_of(self, kind: str) -> list[tuple[str, str | None]]:
        """(path, content or None when unknown) of every file of one kind (catalog.manifest.FILE_KINDS)."""
        return [(f.path, f.content) for f in self.files or [] if f.kind == kind]

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
        """Services of this role, in natural order of their labels."""
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


def _listeners(value: Any) -> list[Listener]:
    found = []
    for item in value if isinstance(value, list) else []:
        if not isinstance(item, dict):
            continue
        port = item.get("port")
        if isinstance(port, int | float) and not isinstance(port, bool):
            found.append(Listener(extract.text(item.get("address")) or "0.0.0.0", int(port),
                                  extract.text(item.get("what")) or ""))
    return found


def _files(value: Any) -> list[File] | None:
    if extract.is_unknown(value):
        return None
    found = []
    for item in value if isinstance(value, list) else []:
        if isinstance(item, dict) and extract.text(item.get("path")):
            found.append(File(item["path"], extract.text(item.get("kind")) or "", extract.text(item.get("mode")) or "",
                              extract.text(item.get("owner")) or "", extract.text(item.get("content"))))
    return found


def _service(resource: PolicyResource, props: dict[str, Any], index: dict[str, PolicyResource]) -> Service:
    chain = ancestors(resource, index)
    address = extract.text(props.get("address"))
    return Service(
        resource=resource,
        role=extract.text(props.get("role")),
        label=extract.text(props.get("node")) or resource.name,
        group=chain[0].urn if chain else None,
        cluster=next((a.urn for a in chain if a.resource_type == CLUSTER_COMPONENT), None),
        hosts=(address,) if address else (),
        files=_files(props.get("files")),
        listeners=_listeners(props.get("listeners")),
        published=_listeners(props.get("published")),
        target=extract.text(props.get("target")),
    )


def build(resources: Sequence[PolicyResource]) -> StackView:
    """The stack view of the resources a StackValidationArgs holds."""
    index = {r.urn: r for r in resources}
    everything = [(r, extract.plain(r.props)) for r in resources]
    services = [_service(r, props, index) for r, props in everything if r.resource_type == SERVICE_MANIFEST]
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
