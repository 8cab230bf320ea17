"""The change plan: what a deployment will do to each node of a running cluster, said before anything runs.

Every deployment exports what it applies (`applied_configuration`: per node, plain and non-secret: the
digest of each file, or of its shape where its content holds secrets; the PostgreSQL parameters; Patroni's
dynamic settings; the image or packages), and reads what the previous deployment applied from the stack's
own outputs through a StackReference to itself (the engine's builtin provider reads the outputs the backend
holds, those of the last update, pulumi/pulumi pkg/resource/deploy/builtins.go readStackReference). The two
give, per node, one or more of:

    nothing   no file, parameter or image changes there
    create    a node new to the stack            remove    a node the stack no longer has
    reload    a process re-reads its files (a signal); PostgreSQL parameters applied by reload
    restart   a process restarts alone; PostgreSQL parameters that need a restart (context postmaster):
              the pending-restart step restarts the members one at a time, replicas first, the leader last
    replace   the container is recreated (a new image, or a setting Docker cannot change in place)
    rotate    a generated credential gets a new value (pgha:rotate)
    install   packages change on the host, or a pinned version (pgha:ssh.packages): the processes that run
              them restart (or reload, where they re-execute their binary), one host at a time

`pulumi preview` prints the plan among its diagnostics (and the local engine with its own plan); the
`change_plan` output keeps it. Everything it compares is known before anything is created, so a preview
shows it complete.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

from catalog.pg_parameters import needs_restart
from operations import topology
from render.paths import FIREWALL_RULESET

APPLIED_OUTPUT = "applied_configuration"
PLAN_OUTPUT = "change_plan"
# The ordered steps of a topology change (members joining or leaving), beside the nodes in the change plan.
TOPOLOGY_KEY = "(topology)"
ROLLING = "one member at a time, replicas first, the leader last, in place"


def _pairs(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[tuple[str, Any, Any]]:
    return [(k, old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys()) if old.get(k) != new.get(k)]


def _arrow(changes: list[tuple[str, Any, Any]]) -> str:
    def show(value: Any) -> str:
        return "(unset)" if value is None else str(value)

    return ", ".join(f"{k} {show(a)} -> {show(b)}" for k, a, b in changes)


def node_actions(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """What changes on one node between two applied configurations, as "verb: detail" lines."""
    if old is None and new is None:
        return []
    if old is None:
        return ["create"]
    if new is None:
        return ["remove"]
    actions: list[str] = []
    if old.get("generation", 0) != new.get("generation", 0):
        actions.append(f"replace: host generation {old.get('generation', 0)} -> {new.get('generation', 0)}: every "
                       "command of the host runs again as on a new host (it was rebuilt empty)")
    if old.get("image") != new.get("image") or old.get("boot") != new.get("boot"):
        what = "a new image" if old.get("image") != new.get("image") else "new container settings"
        actions.append(f"replace: the container is recreated ({what}); its data volume is kept")
    if old.get("packages") != new.get("packages"):
        before, after = set(old.get("packages", [])), set(new.get("packages", []))
        delta = [*(f"+{p}" for p in sorted(after - before)), *(f"-{p}" for p in sorted(before - after))]
        actions.append(f"install: packages {' '.join(delta)}")
    pins = _pairs(old.get("pins", {}), new.get("pins", {}))
    if pins:
        moves = ", ".join(f"{k} {a or 'unpinned'} -> {b or 'unpinned (stays as installed)'}" for k, a, b in pins)
        actions.append(f"install: {moves} (one host at a time, PostgreSQL after its pre-checks)")
        moved = {name for name, _, _ in pins}
        for name, process in sorted(new.get("processes", {}).items()):
            took = sorted(moved & set(process.get("packages", [])))
            if took:
                how = process.get("upgrade", "restart")
                why = ("; a leader switches over first" if how == "restart" and new.get("role") == "postgres"
                       else "")
                actions.append(f"{how}: {name} (new packages: {', '.join(took)}{why})")
    # A generation a previous version did not record is 0: the credential its first deployment generated.
    generations = old.get("credentials", {}), new.get("credentials", {})
    rotated = [k for k in sorted(generations[0].keys() | generations[1].keys())
               if generations[0].get(k, 0) != generations[1].get(k, 0)]
    if [c for c in rotated if c != "etcd"]:
        actions.append(f"rotate: {', '.join(c for c in rotated if c != 'etcd')} (a new password: PostgreSQL's "
                       "roles first, then every file that carries it, by reload)")
    if "etcd" in rotated:
        actions.append("rotate: etcd (a new etcd user for Patroni first, then patroni.yml by reload; the earlier "
                       "user goes once every Patroni logs in as the new one)")
    actions += _tls_actions(old.get("tls"), new.get("tls"))
    trust = _pairs(old.get("etcd_trust", {}), new.get("etcd_trust", {})) if "etcd_trust" in old else []
    if trust:
        actions.append(f"restart: etcd for its CA bundle, {_arrow(trust)} (etcd reads it only when it starts; "
                       "one member at a time)")
    params = _pairs(old.get("parameters", {}), new.get("parameters", {}))
    restart = [p for p in params if needs_restart(p[0])]
    reload = [p for p in params if not needs_restart(p[0])]
    if restart:
        actions.append(f"restart: PostgreSQL for {_arrow(restart)} ({ROLLING})")
    if reload:
        actions.append(f"reload: PostgreSQL for {_arrow(reload)}")
    dcs = _pairs(old.get("dcs", {}), new.get("dcs", {}))
    if dcs:
        actions.append(f"reload: Patroni's dynamic configuration for {_arrow(dcs)}")
    changed = {p for p, _, _ in _pairs(old.get("files", {}), new.get("files", {}))}
    taken: set[str] = set()
    for name, process in sorted(new.get("processes", {}).items()):
        read = sorted(changed & set(process["reads"]))
        again = sorted(changed & set(process.get("restart_reads", [])))
        if again:
            # Patroni's etcd connection: a restart under pause (components/patroni_node.py).
            paused = ", paused: PostgreSQL keeps running" if new.get("role") == "postgres" else ""
            taken |= set(read)
            actions.append(f"restart: {name} ({', '.join(read)}; it reads {', '.join(again)} only when it "
                           f"starts{paused})")
        elif read:
            taken |= set(read)
            actions.append(f"{process['on_change']}: {name} ({', '.join(read)})")
    # Files a step of their own loads rather than a process (the host firewall's ruleset: targets/firewall.py).
    loaded = {FIREWALL_RULESET: "loaded by nft: what it adds at once, the whole ruleset at the deployment's end"}
    for path in sorted((changed - taken) & set(loaded)):
        actions.append(f"write: {path} ({loaded[path]})")
    if changed - taken - set(loaded):
        actions.append(f"write: {', '.join(sorted(changed - taken - set(loaded)))} (read when next used)")
    return actions or ["nothing"]


def _tls_actions(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    if old is None or new is None or old == new:
        return []
    if old.get("ca_generation") != new.get("ca_generation"):
        overlap = ("; the previous CA stays trusted and cross-signs the new one" if new.get("trust_previous_ca")
                   else "; the previous CA is no longer trusted")
        return [f"rotate: the CA, generation {old.get('ca_generation')} -> {new.get('ca_generation')}: a new "
                f"server certificate{overlap} (PostgreSQL reloads)"]
    actions = []
    if old.get("trust_previous_ca") != new.get("trust_previous_ca"):
        actions.append("reload: TLS trust, the previous CA " + ("trusted again" if new.get("trust_previous_ca")
                                                                else "dropped (and its cross-signature)"))
    lifetime = [p for p in _pairs(old, new) if p[0] in ("server_validity_days", "renew_before_days")]
    if lifetime:
        actions.append(f"rotate: the server certificate, {_arrow(lifetime)} (PostgreSQL reloads)")
    return actions


def verbs(actions: list[str]) -> set[str]:
    """The verbs of a node's actions ("restart", "reload", ...)."""
    return {a.split(":", 1)[0] for a in actions}


def plan(old: Mapping[str, Any], new: Mapping[str, Any]) -> dict[str, list[str]]:
    """Node -> its actions, for every node of either configuration (in the new one's order, removed last)."""
    nodes = [*new, *(n for n in old if n not in new)]
    return {n: node_actions(old.get(n), new.get(n)) for n in nodes}


def render(name: str, steps: Mapping[str, list[str]]) -> str:
    """The plan as the readable list a preview prints."""
    width = max((len(n) for n in steps), default=0)
    lines = [f"pgha change plan for {name} (what this deployment does to each node):"]
    for node, actions in steps.items():
        for i, action in enumerate(actions):
            lines.append(f"  {node if i == 0 else '':<{width}}  {action}")
    return "\n".join(lines)


def _integral(value: Any) -> Any:
    """Outputs read through a StackReference carry numbers as floats (JSON): 3.0 is read back as 3."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {k: _integral(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_integral(v) for v in value]
    return value


def previous(name: str, parent: pulumi.Resource) -> pulumi.Output[dict[str, Any]]:
    """The previous deployment's applied configuration (host -> facts; empty on a first deployment), read
    from the stack's own outputs."""
    ref = pulumi.StackReference(
        f"{name}-previous",
        f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}",
        opts=pulumi.ResourceOptions(parent=parent),
    )
    return ref.get_output(APPLIED_OUTPUT).apply(lambda value: _integral(value or {}))


def declare(name: str, applied: Mapping[str, Mapping[str, Any]], before: pulumi.Output[dict[str, Any]],
            parent: pulumi.Resource, live: list[str] | None = None) -> pulumi.Output[Any]:
    """Log the plan from the previous deployment's applied configuration (`before`) to this one, and return
    it (an Output of node -> actions) for the `change_plan` output. `live`: the running PostgreSQL
    cluster's members, as the program found them (None: no Patroni answered)."""
    current = {n: dict(v) for n, v in applied.items()}

    def show(old: dict[str, Any]) -> dict[str, list[str]]:
        refused = topology.refusals(old, current, live)
        if refused:
            # Raised while the program runs: the preview `pulumi up` runs first fails, nothing is deployed.
            raise pulumi.RunError("pgha: this topology change is refused, nothing was changed:\n  "
                                  + "\n  ".join(refused))
        steps = plan(old, current)
        ordered = topology.steps(old, current, live)
        if ordered:
            steps[TOPOLOGY_KEY] = ordered
        pulumi.log.info(render(name, steps), parent)
        return steps

    return before.apply(show)
