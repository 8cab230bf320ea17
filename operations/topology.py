"""Topology changes between two deployments: which members join and leave each group, the ordered steps a
deployment takes for them, and the changes it refuses before anything is touched.

Both sides are applied configurations (host -> facts with its `role`, operations/change_plan.py): the previous
deployment's, read back from the stack's outputs, and this one's. The refusals are checked while the program
runs, so `pulumi preview` (which `pulumi up` runs first) fails with them and nothing is deployed.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

GROUPS = (("etcd", "etcd.members"), ("postgres", "postgres.nodes"), ("haproxy", "haproxy.nodes"))


def _natural(name: str) -> list[Any]:
    """Sort key that orders `pg-2` before `pg-10`."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def members(applied: Mapping[str, Mapping[str, Any]], role: str) -> list[str]:
    """The hosts of `role` in an applied configuration, by name (the outputs read back keep no order)."""
    return sorted((host for host, facts in applied.items() if facts.get("role") == role), key=_natural)


def changes(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]
            ) -> dict[str, tuple[list[str], list[str], list[str]]]:
    """role -> (kept, joining, leaving) hosts; empty when `old` is empty (a first deployment)."""
    if not old:
        return {}
    result = {}
    for role, _ in GROUPS:
        before, after = members(old, role), members(new, role)
        result[role] = ([h for h in after if h in before], [h for h in after if h not in before],
                        [h for h in before if h not in after])
    return result


def refusals(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Why the change from `old` to `new` is refused (an empty list: it is allowed)."""
    problems = []
    fields = dict(GROUPS)
    for role, (kept, joining, leaving) in changes(old, new).items():
        field, before = fields[role], len(kept) + len(leaving)
        if not leaving:
            pass
        elif role == "etcd" and 2 * len(leaving) >= before:
            problems.append(
                f"{field}: removing {', '.join(leaving)} ({len(leaving)} of the {before} members) in one deployment "
                f"would remove a majority of the etcd cluster; remove at most {(before - 1) // 2} per deployment")
        elif not kept:
            problems.append(f"{field}: no member of the running cluster stays ({', '.join(leaving)} all leave); keep "
                            "at least one in this deployment and remove it in the next")
        elif role == "postgres":
            problems.append(
                f"{field}: removing {', '.join(leaving)} is not supported by this version yet (its roles would not be "
                "moved off it first); keep it in the list")
        elif role == "haproxy":
            problems.append(
                f"{field}: removing {', '.join(leaving)} is not supported by this version yet (the virtual IP would "
                "not be handed over first); keep it in the list")
        if role == "haproxy" and joining:
            problems.append(f"{field}: adding {', '.join(joining)} is not supported by this version yet (the "
                            "keepalived peers would not be updated in a safe order); leave the list as it is")
    return problems


def steps(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The ordered steps of the topology change from `old` to `new` (none without one)."""
    found = changes(old, new)
    if not any(joining or leaving for _, joining, leaving in found.values()):
        return []
    _, etcd_joining, etcd_leaving = found["etcd"]
    _, pg_joining, _ = found["postgres"]
    result = [f"etcd: {m} joins the running cluster as a learner and is promoted once it has caught up"
              for m in etcd_joining]
    result += [f"postgres: {n} bootstraps as a replica of the leader, streams, then joins the read-only pool"
               for n in pg_joining]
    if etcd_joining or etcd_leaving:
        result.append("patroni: every node's etcd host list is rewritten, one node at a time (a reload, no restart: a "
                      "running Patroni follows the etcd cluster's own member list; the file counts at its next start)")
    if pg_joining:
        result.append("haproxy: the backends take the new PostgreSQL nodes, one HAProxy node at a time (reload)")
    result += [f"etcd: {m} is removed from the cluster (member remove, while the others are healthy), then stopped"
               for m in etcd_leaving]
    return [f"{i}. {s}" for i, s in enumerate(result, 1)]
