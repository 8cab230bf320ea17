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


def moved(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]], role: str
          ) -> list[tuple[str, str, str]]:
    """(host, old address, new address) of each member of `role` both deployments have, at another address now
    (an earlier pgha version recorded no address: no move is seen)."""
    return [(h, old[h]["address"], new[h]["address"]) for h in members(new, role)
            if h in old and old[h].get("role") == role and old[h].get("address")
            and new[h].get("address") and old[h]["address"] != new[h]["address"]]


def refusals(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]],
             live: list[str] | None = None) -> list[str]:
    """Why the change from `old` to `new` is refused (an empty list: it is allowed). `live` names the
    members of the running PostgreSQL cluster (None: no Patroni answered the program)."""
    problems = []
    fields = dict(GROUPS)
    for role, (kept, joining, leaving) in changes(old, new).items():
        field, before = fields[role], len(kept) + len(leaving)
        # A member that moves replaces its identity in the etcd cluster (removed at the old address, added at
        # the new one): it counts with the members that leave.
        shifted = [h for h, _, _ in moved(old, new, role)] if role == "etcd" else []
        if role == "etcd" and shifted and 2 * (len(leaving) + len(shifted)) >= before:
            what = " and ".join(filter(None, [f"removing {', '.join(leaving)}" if leaving else "",
                                              f"moving {', '.join(shifted)} to a new address"]))
            problems.append(
                f"{field}: {what} ({len(leaving) + len(shifted)} of the {before} members) in one deployment would "
                "replace a majority of the etcd cluster (a member that moves is removed at its old address and "
                f"added at its new one); remove or move at most {(before - 1) // 2} per deployment")
        elif not leaving:
            pass
        elif role == "etcd" and 2 * len(leaving) >= before:
            problems.append(
                f"{field}: removing {', '.join(leaving)} ({len(leaving)} of the {before} members) in one deployment "
                f"would remove a majority of the etcd cluster; remove at most {(before - 1) // 2} per deployment")
        elif not kept:
            problems.append(f"{field}: no member of the running cluster stays ({', '.join(leaving)} all leave); keep "
                            "at least one in this deployment and remove it in the next")
        elif role == "postgres" and live is None:
            problems.append(
                f"{field}: removing {', '.join(leaving)} needs the running cluster, to move their roles to the nodes "
                "that stay first, and no configured node's Patroni REST API answered (a preview run where the hosts "
                "cannot be reached refuses it too); bring the cluster back, or keep them in the list for now")
        for host in kept:
            before_gen, after_gen = old[host].get("generation", 0), new[host].get("generation", 0)
            if after_gen < before_gen:
                problems.append(
                    f"host_generations.{host}: {before_gen} -> {after_gen}; a generation only goes up (a lower one "
                    "would run every command of the host again as on a new host, on the data it holds)")
            elif after_gen > before_gen and role == "postgres" and live is not None and host in live:
                problems.append(
                    f"host_generations.{host}: raised to {after_gen} while {host} is a running member of the cluster; "
                    "raise it only for a host rebuilt empty (its data would be refused and its service stopped)")
        if role == "haproxy" and leaving:
            unknown = [h for h in leaving if not old[h].get("address")]
            if unknown:
                problems.append(
                    f"{field}: removing {', '.join(unknown)} needs its address from the previous deployment, which an "
                    "earlier pgha version did not record: deploy once with the HAProxy nodes unchanged, then remove it")
        if role == "haproxy" and joining:
            # The nodes converge in the list's order: a new node before one that stays would start while that
            # one does not know it as a VRRP peer (and, holding the address, would not send it adverts).
            order = [h for h, facts in new.items() if facts.get("role") == "haproxy"]
            for node in joining:
                later = [k for k in order[order.index(node):] if k in kept]
                if later:
                    problems.append(f"{field}: {node} would start before {', '.join(later)} knows it as a VRRP "
                                    "peer; list the new HAProxy nodes after the ones that stay")
    problems += etcd_tls_refusals(old, new)
    return problems


# What an etcd member's facts say of its transport (absent: plain HTTP, as an earlier pgha deployed it).
ETCD_TLS, ETCD_TLS_TRANSITION = 1, "transition"


def etcd_tls_refusals(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The moves of etcd's transport this version refuses. A cluster an earlier pgha ran in plain HTTP moves to
    TLS in two deployments (render/etcd.py): the first with `etcd.tls_migration: true` (every member serves both
    schemes and holds its certificates; Patroni connects over TLS), the second without it (TLS only, access
    control on). Members could not switch in one rolling pass: one that speaks TLS to its peers could not be
    reached by those that hold no certificates yet, and the cluster would lose its quorum halfway."""
    was = {h: f.get("etcd_tls") for h, f in old.items() if f.get("role") == "etcd"}
    now = {h: f.get("etcd_tls") for h, f in new.items() if f.get("role") == "etcd"}
    migrating = ETCD_TLS_TRANSITION in now.values()
    field = "etcd.tls_migration"
    if migrating and not was:
        return [f"{field}: true on the stack's first deployment, which has no running etcd to move to TLS; "
                "remove it (a new cluster serves etcd over TLS from the start)"]
    if migrating and all(v == ETCD_TLS for v in was.values()):
        return [f"{field}: true, but every etcd member already serves TLS only (the migration's second deployment "
                "ran); remove it"]
    plain = sorted((h for h, v in was.items() if v is None), key=_natural)
    problems = []
    if plain and not migrating:
        problems.append(
            f"etcd.members: {', '.join(plain)} run etcd in plain HTTP (deployed by an earlier pgha); this version "
            "serves etcd over TLS with access control. The move takes two deployments: set `etcd.tls_migration: "
            "true` for one (each member serves both schemes and gets its certificates, Patroni connects over "
            "TLS), then remove it for the next (TLS only, access control on). Nothing was changed")
    unfinished = plain or any(v == ETCD_TLS_TRANSITION for v in was.values()) or migrating
    shifted = [h for h, _, _ in moved(old, new, "etcd")]
    if unfinished and (set(was) != set(now) or shifted):
        joining, leaving = sorted(set(now) - set(was), key=_natural), sorted(set(was) - set(now), key=_natural)
        what = ", ".join(filter(None, [f"{', '.join(joining)} joining" if joining else "",
                                       f"{', '.join(leaving)} leaving" if leaving else "",
                                       f"{', '.join(shifted)} moving" if shifted else ""]))
        problems.append(f"etcd.members: {what} while etcd moves to TLS; change the members before or after the "
                        "two deployments of the move, not during them")
    return problems


def steps(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]],
          live: list[str] | None = None) -> list[str]:
    """The ordered steps of the topology change from `old` to `new` (none without one). Of the PostgreSQL
    nodes that leave, only those the running cluster lists (`live`) have roles to move off them."""
    found = changes(old, new)
    etcd_moved, pg_moved = moved(old, new, "etcd"), moved(old, new, "postgres")
    if not any(joining or leaving for _, joining, leaving in found.values()) and not etcd_moved and not pg_moved:
        return []
    _, etcd_joining, etcd_leaving = found["etcd"]
    _, pg_joining, pg_leaving = found["postgres"]
    running = [n for n in pg_leaving if live is not None and n in live]
    result = [f"etcd: {m} moves from {before} to {after}: its identity at {before} is removed and it joins anew as "
              "a learner, promoted once it has caught up (data it brings along is set aside)"
              for m, before, after in etcd_moved]
    result += [f"etcd: {m} joins the running cluster as a learner and is promoted once it has caught up"
               for m in etcd_joining]
    result += [f"postgres: {n} moves from {before} to {after}: it leaves from {before} if it still runs there (its "
               "roles moved off first), then joins at the new address after the nodes that stay admit it"
               for n, before, after in pg_moved]
    result += [f"postgres: {n} leaves: a leader switches over first; tagged nofailover, nosync and noloadbalance "
               "(the synchronous role moves to a node that stays, HAProxy drains it), then stopped" for n in running]
    if etcd_joining or etcd_leaving or etcd_moved:
        result.append("patroni: every node's etcd host list is rewritten, one node at a time (a reload, no restart: a "
                      "running Patroni follows the etcd cluster's own member list; the file counts at its next start)")
    result += [f"postgres: {n} bootstraps as a replica (from the newest pgBackRest backup, else with pg_basebackup "
               "from the leader), streams, then joins the read-only pool" for n in pg_joining]
    _, haproxy_joining, haproxy_leaving = found["haproxy"]
    result += [f"haproxy: {n} hands the virtual IP over if it holds it, then stops, before the nodes that stay drop "
               "it as a VRRP peer" for n in haproxy_leaving]
    if pg_joining or pg_leaving or pg_moved or haproxy_joining or haproxy_leaving:
        what = " and ".join(filter(None, ["follow the PostgreSQL nodes" if pg_joining or pg_leaving or pg_moved
                                          else "",
                                          "take the new VRRP peers" if haproxy_joining or haproxy_leaving else ""]))
        result.append(f"haproxy: the nodes that stay {what}, one HAProxy node at a time (reload)")
    result += [f"haproxy: {n} starts once the nodes before it know it as a VRRP peer, a backup of lower priority "
               "(it takes the virtual IP only when no node holds it)" for n in haproxy_joining]
    result += [f"etcd: {m} is removed from the cluster (member remove, while the others are healthy), then stopped"
               for m in etcd_leaving]
    if pg_leaving:
        result.append(f"postgres: the cluster forgets {', '.join(pg_leaving)} (their member keys expire, the leader "
                      "drops their replication slots); their resources go last, their data as the target keeps it")
    return [f"{i}. {s}" for i, s in enumerate(result, 1)]
