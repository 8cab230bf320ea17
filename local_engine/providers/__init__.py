"""The providers the local engine implements, one class per resource type, behind one small interface.

Each provider follows the real one (the source it copies is named in its module): which inputs it
accepts, how it diffs them against the state (update in place or replace), and what create, update
and delete do. Unknown types and inputs are refused by name.
"""

from __future__ import annotations

import abc
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from local_engine.state import ResourceState
from local_engine.wire import UNKNOWN, is_secret, is_unknown, unwrap


@dataclass(frozen=True)
class Diff:
    """A provider's answer to "what changed": the changed input keys, those that force a replacement,
    whether a replacement must delete first, and notes for the plan."""

    changed: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    delete_before_replace: bool = False
    notes: tuple[str, ...] = ()


@dataclass
class Context:
    """What a provider needs besides the inputs: where the program runs, labels, cancellation, logging."""

    workdir: Path
    labels: dict[str, str]
    cancel: threading.Event
    log: Callable[[str], None]
    docker: Callable[[], Any]  # a docker client for this thread
    report: Callable[[Any], None] = field(default=lambda run: None)  # a command execution (commands.CommandRun)


class PartialCreateError(RuntimeError):
    """Create made the object but then failed (e.g. a container never got healthy): the engine keeps it
    in the state with init errors, as pulumi does with a provider's ResourceInitFailedError."""

    def __init__(self, resource_id: str, outputs: dict[str, Any], cause: str) -> None:
        super().__init__(cause)
        self.resource_id, self.outputs = resource_id, outputs


class Provider(abc.ABC):
    """One resource type of one provider."""

    type: str
    source: str  # where the real behaviour is decided (repository path)

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        """Validate the inputs and add the defaults the real provider's Check adds."""
        return inputs

    @abc.abstractmethod
    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        """Compare new inputs with the state."""

    @abc.abstractmethod
    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """Make the resource; (id, outputs)."""

    def update(self, ctx: Context, old: ResourceState, inputs: dict[str, Any], diff: Diff) -> dict[str, Any]:
        """Change the resource in place; its new outputs."""
        raise NotImplementedError(f"{self.type} has no in-place update")

    def delete(self, ctx: Context, old: ResourceState) -> None:  # noqa: B027 - a generated value only leaves the state
        """Remove the resource (nothing to do for a value that lives only in the state)."""

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        """The outputs a preview reports: inputs, and unknown for what only the provider would know."""
        if op == "update" and old is not None:
            return {**old.outputs, **inputs}
        return dict(inputs)


def value_changed(old: Any, new: Any, secrets_matter: bool = False) -> bool:
    """True when a new input differs from the state: an unknown always does; secretness only counts where
    the provider compares wrapped values (pulumi-go-provider infer: a secret and a plain value differ)."""
    if is_unknown(new):
        return True
    if secrets_matter:
        if is_secret(old) != is_secret(new):
            return True
        return value_changed(unwrap(old), unwrap(new)) if is_secret(new) else _plain(old) != _plain(new)
    return _plain(unwrap(old)) != _plain(unwrap(new))


def _plain(value: Any) -> Any:
    """Engine numbers arrive as floats: 5 and 5.0 are one value."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any], secrets_matter: bool = False,
                 ignore: Iterable[str] = ()) -> tuple[str, ...]:
    """Top-level keys whose values differ (a key set to None counts as absent)."""
    skipped = set(ignore)
    keys = [k for k in dict.fromkeys([*old, *new]) if k not in skipped]
    return tuple(k for k in keys if (old.get(k) is not None or new.get(k) is not None)
                 and value_changed(old.get(k), new.get(k), secrets_matter))


def unknown_outputs(inputs: Mapping[str, Any], *computed: str) -> dict[str, Any]:
    """Preview outputs of a new resource: its inputs, with the computed outputs unknown."""
    return {**inputs, **dict.fromkeys(computed, UNKNOWN)}
