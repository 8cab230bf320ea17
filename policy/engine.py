"""Run policies the way the Pulumi engine does, over a graph recorded under the mock runtime."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi.output import Unknown
from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError, unknown_checking_proxy

from policy.evaluate import Graph, Registration, is_secret

STACK_TYPE = "pulumi:pulumi:Stack"
LEVELS = {level.value: level for level in EnforcementLevel}


@dataclass(frozen=True)
class Violation:
    """One reported violation: policy, effective enforcement level, message and the resource it is about."""

    level: EnforcementLevel
    policy: str
    description: str
    message: str
    urn: str | None


@dataclass
class EngineView:
    """A graph as the engine hands it to policies: stack resources (state) and each resource's inputs."""

    resources: list[PolicyResource]
    requests: list[ResourceValidationArgs]
    stack_urn: str


def engine_value(value: Any) -> Any:
    """What the engine sends a policy: secrets as plaintext, values unknown in preview as its sentinel."""
    if is_secret(value):
        return engine_value(value["value"])
    if isinstance(value, Unknown):
        return UNKNOWN_STRING_VALUE
    if isinstance(value, dict):
        return {k: engine_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [engine_value(v) for v in value]
    return value


def state(reg: Registration) -> dict[str, Any]:
    """A resource's state as stack policies see it: what the provider answered, overlaid by the inputs it
    echoed (which keeps values unknown in a preview unknown); a component's state is what it registered
    with register_outputs, nothing otherwise (pulumi/pulumi step_executor.go executeRegisterResourceOutputs
    replaces a component's outputs; AnalyzeStack sees final outputs)."""
    if not reg.custom:
        return engine_value(reg.registered_outputs or {})
    return {**engine_value(reg.outputs), **engine_value(reg.inputs)}


def engine_urn(urn: str) -> str:
    """The URN the engine would give: it leaves the root stack's type out of its children's qualified types
    (the mock monitor keeps it)."""
    return urn.replace(f"::{STACK_TYPE}$", "::")


def _options(reg: Registration | None, parent: str | None) -> PolicyResourceOptions:
    return PolicyResourceOptions(
        protect=reg.protect if reg else False,
        ignore_changes=[],
        delete_before_replace=reg.delete_before_replace if reg else None,
        aliases=[],
        custom_timeouts=PolicyCustomTimeouts(0, 0, 0),
        additional_secret_outputs=list(reg.additional_secret_outputs) if reg else [],
        parent=parent or None,
    )


def policy_resources(graph: Graph) -> EngineView:
    """Stack resources with camelCase props (provider state over inputs), parents, dependencies, and the stack."""
    stack_urn = next((r.parent for r in graph.resources if f"::{STACK_TYPE}::" in r.parent),
                     f"urn:pulumi:{graph.stack}::{graph.project}::{STACK_TYPE}::{graph.project}-{graph.stack}")
    stack = PolicyResource(STACK_TYPE, unknown_checking_proxy(engine_value(graph.outputs)), stack_urn,
                           stack_urn.rsplit("::", 1)[-1], _options(None, None), None, None, [], {})
    resources = [stack]
    requests = []
    for reg in graph.resources:
        urn, parent = engine_urn(reg.urn), engine_urn(reg.parent) if reg.parent else ""
        # Stack policies see each resource's state, resource policies its inputs.
        opts = _options(reg, parent)
        resources.append(PolicyResource(reg.type, unknown_checking_proxy(state(reg)), urn, reg.name, opts, None,
                                        None, [], {}))
        requests.append(ResourceValidationArgs(reg.type, unknown_checking_proxy(engine_value(reg.inputs)), urn,
                                               reg.name, opts, None))
    by_urn = {r.urn: r for r in resources}
    for reg, resource in zip(graph.resources, resources[1:], strict=True):
        resource.parent = by_urn.get(engine_urn(reg.parent))
        resource.dependencies = [by_urn[engine_urn(d)] for d in reg.dependencies if engine_urn(d) in by_urn]
    return EngineView(resources, requests, stack_urn)


def load_pack_config(path: Path | None) -> dict[str, Any]:
    """A `--policy-pack-config` JSON file: {"all"|policy: level or {"enforcementLevel": ..., property: value}}."""
    if path is None:
        return {}
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object of policy names")
    return data


def _level(value: Any, where: str) -> EnforcementLevel:
    if value not in LEVELS:
        raise ValueError(f"policy config {where}: enforcement level {value!r}; expected one of {', '.join(LEVELS)}")
    return LEVELS[value]


def _check_property(policy: Policy, name: str, value: Any) -> None:
    schema = policy.config_schema.properties if policy.config_schema else {}
    spec = schema.get(name)
    if spec is None:
        known = ", ".join(schema) or "none"
        raise ValueError(f"policy config {policy.name}.{name}: unknown property (known: {known})")
    if spec["type"] == "integer" and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < spec.get("minimum", value)):
        raise ValueError(f"policy config {policy.name}.{name}: {value!r}; expected an integer of at least "
                         f"{spec.get('minimum')}")
    if spec["type"] == "array" and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise ValueError(f"policy config {policy.name}.{name}: {value!r}; expected a list of strings")


def resolve(policy: Policy, pack_config: Mapping[str, Any]) -> tuple[EnforcementLevel, dict[str, Any]]:
    """The effective enforcement level and config properties of one policy; ValueError for a bad entry."""
    level = policy.enforcement_level or EnforcementLevel.MANDATORY  # the pack's default (see __main__.py)
    properties: dict[str, Any] = {}
    for key in ("all", policy.name):
        entry = pack_config.get(key)
        if isinstance(entry, str):
            level = _level(entry, key)
        elif isinstance(entry, dict):
            if "enforcementLevel" in entry:
                level = _level(entry["enforcementLevel"], key)
            if key != "all":
                properties = {k: v for k, v in entry.items() if k != "enforcementLevel"}
        elif entry is not None:
            raise ValueError(f"policy config {key}: expected an enforcement level or an object, got {entry!r}")
    for name, value in properties.items():
        _check_property(policy, name, value)
    return level, properties


def _about(report: Callable[[str, str | None], None], urn: str, message: str, _urn: str | None = None) -> None:
    report(message, urn)  # a resource policy's violation is about the resource it ran on


def analyze(policies: Sequence[Policy], view: EngineView, pack_config: Mapping[str, Any],
            pack: str = "pgha-policy", version: str = "0.1.0") -> list[Violation]:
    """Run every enabled policy: resource policies per resource, stack policies once; collect violations."""
    unknown = sorted(set(pack_config) - {"all"} - {p.name for p in policies})
    if unknown:
        raise ValueError(f"policy config: unknown policy {', '.join(unknown)} (known: all, "
                         f"{', '.join(p.name for p in policies)})")
    resolved = [(policy, *resolve(policy, pack_config)) for policy in policies]
    violations: list[Violation] = []
    for policy, level, properties in resolved:
        if level == EnforcementLevel.DISABLED:
            continue
        if level == EnforcementLevel.REMEDIATE:
            level = EnforcementLevel.MANDATORY

        def report(message: str, urn: str | None = None, _p: Policy = policy, _l: EnforcementLevel = level) -> None:
            violations.append(Violation(_l, _p.name, _p.description, message, urn))

        try:
            if isinstance(policy, ResourceValidationPolicy):
                for request in view.requests:
                    args = ResourceValidationArgs(request.resource_type, request.props, request.urn, request.name,
                                                  request.opts, None, properties)
                    policy.validate(args, functools.partial(_about, report, request.urn))
            elif isinstance(policy, StackValidationPolicy):
                policy.validate(StackValidationArgs(view.resources, properties), report)
        except UnknownValueError as error:
            violations.append(Violation(EnforcementLevel.ADVISORY, policy.name, policy.description,
                                        f"can't run policy '{policy.name}' from policy pack '{pack}@v{version}' "
                                        f"during preview: {error.message}", None))
    return violations
