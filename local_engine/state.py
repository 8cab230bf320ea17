"""The local engine's checkpoint: every resource a stack holds, as the real engine's state file would."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

STACK_TYPE = "pulumi:pulumi:Stack"


def make_urn(stack: str, project: str, parent: str, type_: str, name: str) -> str:
    """A URN as the engine makes it: the parent's whole qualified type chain before the type, none for the
    root stack's children (pulumi/pulumi sdk/go/common/resource/urn.go NewURN; the SDK's create_urn
    agrees, which matters for alias URNs). The SDK's mock monitor keeps only the parent's last type and
    prefixes the stack's."""
    if parent:
        qualified = parent.split("::")[2]
        if qualified != STACK_TYPE:
            type_ = f"{qualified}${type_}"
    return f"urn:pulumi:{stack}::{project}::{type_}::{name}"


@dataclass
class ResourceState:
    """One resource in a stack: its registration, the inputs it was created or updated with, its outputs.

    ``inputs`` and ``outputs`` are in the engine's wire shape (camelCase, secrets wrapped). ``detail``
    is what the local engine's provider keeps beside the state (e.g. the docker objects it made).
    """

    urn: str
    type: str
    name: str
    custom: bool
    id: str
    parent: str
    inputs: dict[str, Any]
    outputs: dict[str, Any]
    dependencies: list[str] = field(default_factory=list)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    delete_before_replace: bool | None = None  # the resource option, when the program set it
    additional_secret_outputs: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    protect: bool = False
    init_errors: list[str] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    def edges(self) -> set[str]:
        """Everything this resource depends on: dependsOn, property dependencies and its parent.

        pulumi/pulumi pkg/resource/graph/dependency_graph.go (DependenciesOf) counts all three when
        deletes are ordered."""
        found = set(self.dependencies)
        for urns in self.property_dependencies.values():
            found.update(urns)
        if self.parent:
            found.add(self.parent)
        return found



def dependents(snapshot: Mapping[str, ResourceState], root: str, skip: Iterable[str] = ()) -> list[ResourceState]:
    """Resources that depend on ``root`` directly or transitively, not counting children, in an order where
    a resource comes after what it depends on.

    pulumi/pulumi pkg/resource/graph/dependency_graph.go (DependingOn, includeChildren=false): the
    candidates of a delete-before-replace cascade."""
    skipped = set(skip)
    hit = {root}
    found: list[ResourceState] = []
    for state in snapshot.values():  # snapshot order is registration order: dependencies first
        if state.urn in hit or state.urn in skipped:
            continue
        edges = set(state.dependencies) | {u for urns in state.property_dependencies.values() for u in urns}
        if edges & hit:
            hit.add(state.urn)
            found.append(state)
    return found


def antichains(condemned: list[ResourceState]) -> list[list[ResourceState]]:
    """Delete order: groups that can be deleted in parallel, dependents (and children) before what they
    depend on.

    pulumi/pulumi pkg/resource/deploy/step_generator.go (ScheduleDeletes): peel off the resources no
    other condemned resource depends on, repeatedly; each group runs in parallel with a barrier
    between groups."""
    remaining = list(condemned)  # a replaced resource and its replacement may share a URN
    order: list[list[ResourceState]] = []
    while remaining:
        needed = {edge for state in remaining for edge in state.edges()}
        free = [state for state in remaining if state.urn not in needed]
        if not free:  # a cycle cannot come from a program; delete what is left together
            free = list(remaining)
        order.append(free)
        remaining = [state for state in remaining if not any(state is f for f in free)]
    return order
