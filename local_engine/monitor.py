"""The resource monitor the program talks to: each registration becomes a step of the local engine.

It speaks the SDK's monitor protocol (a subclass of the mock monitor, so ``set_mocks`` can install it)
and hands every RegisterResource to the deployment with all the options the engine acts on. Like the
real engine it takes aliases as specs (source_eval.go advertises aliasSpecs); the deployment turns them
into URNs (engine.py, as step_generator.go generateAliases does).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import mocks as pmocks
from pulumi.runtime import rpc
from pulumi.runtime.proto import resource_pb2
from pulumi.runtime.settings import get_project, get_stack
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from local_engine.state import STACK_TYPE, make_urn
from local_engine.wire import UnsupportedInputError

STACK_REFERENCE = "pulumi:pulumi:StackReference"


@dataclass(frozen=True)
class AliasSpec:
    """An alias as the SDK sends it: fields left empty take the resource's own (name, type, parent)."""

    name: str = ""
    type: str = ""
    stack: str = ""
    project: str = ""
    parent_urn: str | None = None  # None: the resource's parent
    no_parent: bool = False


def _alias(alias: Any) -> str | AliasSpec:
    if alias.WhichOneof("alias") == "urn":
        return str(alias.urn)
    spec = alias.spec
    which = spec.WhichOneof("parent")
    # An empty parentUrn (what the SDK sends for an alias that names no parent) means the resource's parent.
    return AliasSpec(spec.name, spec.type, spec.stack, spec.project,
                     spec.parentUrn if which == "parentUrn" and spec.parentUrn else None,
                     which == "noParent" and spec.noParent)


@dataclass
class Registration:
    """One RegisterResource request, with the options the local engine implements."""

    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    inputs: dict[str, Any]
    dependencies: list[str]
    property_dependencies: dict[str, list[str]]
    delete_before_replace: bool | None
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]
    aliases: list[str | AliasSpec]
    protect: bool
    unsupported: list[str] = field(default_factory=list)  # options set that the engine does not implement


class _NoMocks(pmocks.Mocks):
    """What ``set_mocks`` needs beside the monitor; the engine answers every call itself."""

    def new_resource(self, args: pmocks.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        raise UnsupportedInputError(f"{args.typ} '{args.name}': reading an existing resource is not supported")

    def call(self, args: pmocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        raise UnsupportedInputError(f"function {args.token} is not supported by the local engine")


def _unsupported(request: Any) -> list[str]:
    found = []
    for option, what in (("importId", "import"), ("deletedWith", "deleted_with"), ("remote", "a remote component"),
                         ("provider", "an explicit provider")):
        if getattr(request, option, None):
            found.append(what)
    if list(request.ignoreChanges):
        found.append("ignore_changes")
    if request.HasField("retainOnDelete") and request.retainOnDelete:
        found.append("retain_on_delete")
    if list(getattr(request, "replace_with", [])):
        found.append("replace_with")
    return found


class EngineMonitor(pmocks.MockMonitor):
    """The monitor of one program run; ``register`` and ``register_outputs`` are the deployment's."""

    def __init__(self, register: Callable[[Registration], tuple[str, dict[str, Any]]],
                 register_outputs: Callable[[str, dict[str, Any]], None],
                 read_stack: Callable[[str], tuple[dict[str, Any], frozenset[str]]] | None = None) -> None:
        super().__init__(_NoMocks())
        self._register = register
        self._register_outputs = register_outputs
        self._read_stack = read_stack

    def make_urn(self, parent: str, type_: str, name: str) -> str:
        return make_urn(get_stack(), get_project(), parent, type_, name)

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        urn = self.make_urn(request.parent, request.type, request.name)
        if request.type == STACK_TYPE:
            return resource_pb2.RegisterResourceResponse(urn=urn)
        _ensure_event_loop()
        registration = Registration(
            urn=urn, type=request.type, name=request.name, custom=bool(request.custom), parent=request.parent,
            inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
            dependencies=list(request.dependencies),
            property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
            delete_before_replace=request.deleteBeforeReplace if request.deleteBeforeReplaceDefined else None,
            additional_secret_outputs=list(request.additionalSecretOutputs),
            replace_on_changes=list(request.replaceOnChanges),
            aliases=[*(_alias(a) for a in request.aliases), *request.aliasURNs],
            protect=bool(request.protect), unsupported=_unsupported(request))
        resource_id, state = self._register(registration)
        self.resources[urn] = pmocks.MockMonitor.ResourceRegistration(urn, resource_id, state)
        props = _sync_await(rpc.serialize_properties(state, {}))
        return resource_pb2.RegisterResourceResponse(urn=urn, id=resource_id, object=props)

    def RegisterResourceOutputs(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        _ensure_event_loop()
        self._register_outputs(request.urn, rpc.deserialize_properties(request.outputs, keep_unknowns=True))
        return super().RegisterResourceOutputs(request)

    def ReadResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        """Only a StackReference: the engine's builtin provider answers it with the referenced stack's
        outputs, each secret one as a secret (pkg/resource/deploy/builtins.go readStackReference)."""
        if request.type != STACK_REFERENCE or self._read_stack is None:
            raise UnsupportedInputError(f"{request.type} '{request.name}': reading an existing resource (get) is "
                                        "not supported by the local engine")
        _ensure_event_loop()
        props = rpc.deserialize_properties(request.properties)
        name = str(props.get("name") or request.id)
        outputs, secret_names = self._read_stack(name)
        wrapped = {k: pulumi.Output.secret(v) if k in secret_names else v for k, v in outputs.items()}
        state = {"name": name, "outputs": wrapped, "secretOutputNames": sorted(secret_names)}
        urn = self.make_urn(request.parent, request.type, request.name)
        return resource_pb2.ReadResourceResponse(urn=urn, properties=_sync_await(rpc.serialize_properties(state, {})))

    def SupportsFeature(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        has_support = request.id != "outputValues"  # as the mock monitor: no Output objects in inputs
        return type("SupportsFeatureResponse", (object,), {"hasSupport": has_support})
