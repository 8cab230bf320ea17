"""Topology changes between two applied configurations: the ordered steps, and the refusals said before
anything is touched (operations/topology.py), also through the program under the mock runtime."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from config import ConfigError, parse
from operations import topology
from operations.change_plan import APPLIED_OUTPUT, PLAN_OUTPUT, TOPOLOGY_KEY
from tests.golden_util import variant_raw
from tests.support.mock_runtime import run_program


def applied(etcd: int = 3, pg: int = 3, haproxy: int = 2) -> dict[str, dict[str, Any]]:
    hosts = {f"etcd-{i}": "etcd" for i in range(1, etcd + 1)} | {f"pg-{i}": "postgres" for i in range(1, pg + 1)}
    hosts |= {f"haproxy-{i}": "haproxy" for i in range(1, haproxy + 1)}
    return {h: {"role": r, **({"etcd_tls": 1} if r == "etcd" else {})} for h, r in hosts.items()}


def test_a_first_deployment_and_an_unchanged_topology_have_no_steps() -> None:
    assert topology.steps({}, applied()) == [] and topology.refusals({}, applied()) == []
    assert topology.steps(applied(), applied()) == [] and topology.refusals(applied(), applied()) == []


def test_scaling_out_is_ordered_etcd_first_then_postgres_then_haproxy() -> None:
    steps = topology.steps(applied(), applied(etcd=5, pg=5))
    assert [s.split(":")[0].split(". ")[1] for s in steps] == ["etcd", "etcd", "patroni", "postgres", "postgres",
                                                              "haproxy"]
    assert "pg-4 bootstraps as a replica (from the newest pgBackRest backup, else with pg_basebackup" in steps[3]
    assert "etcd-4 joins the running cluster as a learner" in steps[0] and steps[0].startswith("1. ")
    assert topology.refusals(applied(), applied(etcd=5, pg=5)) == []


def test_etcd_members_leave_last_and_never_a_majority() -> None:
    steps = topology.steps(applied(etcd=5), applied(etcd=3))
    assert steps[-2:] == ["2. etcd: etcd-4 is removed from the cluster (member remove, while the others are "
                          "healthy), then stopped",
                          "3. etcd: etcd-5 is removed from the cluster (member remove, while the others are "
                          "healthy), then stopped"]
    assert topology.refusals(applied(etcd=5), applied(etcd=3)) == []
    old = applied(etcd=5)
    new = {h: f for h, f in applied(etcd=5).items() if h not in ("etcd-3", "etcd-4", "etcd-5")}
    new |= {"etcd-6": {"role": "etcd"}, "etcd-7": {"role": "etcd"}}
    [refusal] = topology.refusals(old, new)
    assert refusal.startswith("etcd.members: removing etcd-3, etcd-4, etcd-5 (3 of the 5 members)")
    assert "remove at most 2 per deployment" in refusal


def test_postgres_nodes_leave_first_the_cluster_forgets_them_last() -> None:
    steps = topology.steps(applied(pg=5), applied(pg=3), live=["pg-1", "pg-2", "pg-3", "pg-4", "pg-5"])
    assert [s.split(". ", 1)[1].split(" ", 2)[:2] for s in steps] == [
        ["postgres:", "pg-4"], ["postgres:", "pg-5"], ["haproxy:", "the"], ["postgres:", "the"]]
    assert "a leader switches over first; tagged nofailover, nosync and noloadbalance" in steps[0]
    assert steps[-1].startswith("4. postgres: the cluster forgets pg-4, pg-5 (their member keys expire")
    assert topology.refusals(applied(pg=5), applied(pg=3), live=["pg-1", "pg-4"]) == []
    # A node that stopped already (its key expired) has no roles to move: only the cluster forgets it.
    assert not any("pg-5 leaves" in s for s in topology.steps(applied(pg=5), applied(pg=3), live=["pg-1"]))
    [blind] = topology.refusals(applied(pg=5), applied(pg=3), live=None)
    assert blind.startswith("postgres.nodes: removing pg-4, pg-5 needs the running cluster")


def test_haproxy_nodes_leave_first_and_join_after_the_nodes_that_stay() -> None:
    old = {h: {**f, "address": "10.0.0.1"} for h, f in applied(haproxy=3).items()}
    steps = topology.steps(old, applied(haproxy=2))
    assert steps[0].startswith("1. haproxy: haproxy-3 hands the virtual IP over if it holds it, then stops")
    assert steps[1] == "2. haproxy: the nodes that stay take the new VRRP peers, one HAProxy node at a time (reload)"
    assert topology.refusals(old, applied(haproxy=2)) == []
    [unknown] = topology.refusals(applied(haproxy=3), applied(haproxy=2))
    assert unknown.startswith("haproxy.nodes: removing haproxy-3 needs its address from the previous deployment")
    assert topology.refusals(applied(), applied(haproxy=3)) == []
    assert topology.steps(applied(), applied(haproxy=3))[-1].startswith(
        "2. haproxy: haproxy-3 starts once the nodes before it know it as a VRRP peer")
    # haproxy-1 is new, listed before haproxy-2 and haproxy-3, which stay.
    running = {h: f for h, f in applied(haproxy=3).items() if h != "haproxy-1"}
    [early] = topology.refusals(running, {"haproxy-1": {"role": "haproxy"}, **running})
    assert early == ("haproxy.nodes: haproxy-1 would start before haproxy-2, haproxy-3 knows it as a VRRP peer; "
                     "list the new HAProxy nodes after the ones that stay")


def _etcd_tls(applied_: dict[str, dict[str, Any]], value: Any) -> dict[str, dict[str, Any]]:
    """`applied_` with every etcd member's `etcd_tls` fact set to `value` (None: left out, as an earlier pgha)."""
    return {h: ({k: v for k, v in f.items() if k != "etcd_tls"} | ({} if value is None else {"etcd_tls": value})
                if f["role"] == "etcd" else f) for h, f in applied_.items()}


def test_an_etcd_cluster_in_plain_http_moves_to_tls_in_two_deployments_and_only_so() -> None:
    plain, transition, tls = (_etcd_tls(applied(), v) for v in (None, "transition", 1))
    # Without the setting, this version refuses it and says how to move.
    [refused] = topology.refusals(plain, tls)
    assert refused.startswith("etcd.members: etcd-1, etcd-2, etcd-3 run etcd in plain HTTP (deployed by an earlier "
                              "pgha); this version serves etcd over TLS with access control. The move takes two "
                              "deployments: set `etcd.tls_migration: true` for one")
    # The two deployments, a first one again (it failed halfway, or is re-run), and the second one again.
    for old, new in ((plain, transition), (transition, tls), (transition, transition), (tls, tls)):
        assert topology.refusals(old, new) == [], (old, new)
    half = {**transition, "etcd-3": plain["etcd-3"]}
    assert topology.refusals(half, transition) == []
    assert topology.refusals(half, tls)[0].startswith("etcd.members: etcd-3 run etcd in plain HTTP")
    # The setting where there is nothing to move.
    assert topology.refusals({}, transition) == [
        "etcd.tls_migration: true on the stack's first deployment, which has no running etcd to move to TLS; remove "
        "it (a new cluster serves etcd over TLS from the start)"]
    assert topology.refusals(tls, transition)[0].startswith(
        "etcd.tls_migration: true, but every etcd member already serves TLS only")
    assert topology.refusals({}, tls) == []


def test_the_etcd_members_do_not_change_while_etcd_moves_to_tls() -> None:
    grown = _etcd_tls(applied(etcd=5), "transition")
    [refused] = topology.refusals(_etcd_tls(applied(), None), grown)
    assert refused == ("etcd.members: etcd-4, etcd-5 joining while etcd moves to TLS; change the members before or "
                       "after the two deployments of the move, not during them")
    assert topology.refusals(_etcd_tls(applied(), "transition"), _etcd_tls(applied(etcd=5), 1))[0].startswith(
        "etcd.members: etcd-4, etcd-5 joining while etcd moves to TLS")
    plain = _etcd_tls(applied(), None)
    plain["etcd-2"] = {**plain["etcd-2"], "address": "10.0.0.12"}
    moved = _etcd_tls(applied(), "transition")
    moved["etcd-2"] = {**moved["etcd-2"], "address": "10.0.0.99"}
    assert "etcd.members: etcd-2 moving while etcd moves to TLS" in "\n".join(topology.refusals(plain, moved))
    # Once moved, the members change as ever.
    assert topology.refusals(_etcd_tls(applied(), 1), _etcd_tls(applied(etcd=5), 1)) == []


def test_no_member_of_a_group_staying_is_refused_by_name() -> None:
    replaced = {h: f for h, f in applied().items() if not h.startswith("pg-")}
    replaced |= {f"pg-{i}": {"role": "postgres"} for i in (7, 8, 9)}
    [moved] = topology.refusals(applied(), replaced, live=["pg-1", "pg-2", "pg-3"])
    assert moved.startswith("postgres.nodes: no member of the running cluster stays (pg-1, pg-2, pg-3 all leave)")


def _scaled(raw: dict[str, Any], etcd: int, pg: int) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    raw["etcd"]["members"] = [{"name": f"etcd-{i}", "address": f"10.89.0.{10 + i}"} for i in range(1, etcd + 1)]
    raw["postgres"]["nodes"] = [{"name": f"pg-{i}", "address": f"10.89.0.{20 + i}"} for i in range(1, pg + 1)]
    return raw


def test_the_program_says_the_steps_and_refuses_in_a_preview() -> None:
    raw = variant_raw("dev")
    first = run_program("dev")
    bigger = _scaled(raw, 5, 5)
    overrides = {"pgha:etcd": bigger["etcd"], "pgha:postgres": bigger["postgres"]}
    graph = run_program("dev", overrides, preview=True, previous_outputs=dict(first.outputs))
    plan = graph.outputs[PLAN_OUTPUT]
    assert plan["etcd-4"] == ["create"] and plan["pg-5"] == ["create"]
    assert plan[TOPOLOGY_KEY][0].startswith("1. etcd: etcd-4 joins")
    scaled = run_program("dev", overrides, previous_outputs=dict(first.outputs))
    smaller = _scaled(raw, 5, 3)
    # Under the mock runtime no Patroni answers: a removal cannot move the leaving nodes' roles, refused.
    with pytest.raises(Exception, match=r"postgres.nodes: removing pg-4, pg-5 needs the running cluster"):
        run_program("dev", {"pgha:etcd": smaller["etcd"], "pgha:postgres": smaller["postgres"]}, preview=True,
                    previous_outputs=dict(scaled.outputs))


def test_a_synchronous_standby_count_needs_as_many_standbys() -> None:
    raw = copy.deepcopy(variant_raw("dev"))
    raw["patroni"] = {**raw.get("patroni", {}), "synchronous_node_count": 3}
    with pytest.raises(ConfigError, match=r"patroni.synchronous_node_count: 3 given with 3 postgres.nodes; at most 2"):
        parse(raw)
    raw["patroni"]["synchronous_mode"] = "off"
    parse(raw)


def test_an_haproxy_node_that_leaves_stops_before_the_first_that_stays_converges() -> None:
    raw = variant_raw("dev")
    three = {**raw["haproxy"], "nodes": [*raw["haproxy"]["nodes"], {"name": "haproxy-3", "address": "10.89.0.33"}]}
    first = run_program("dev", {"pgha:haproxy": three})
    assert first.outputs[APPLIED_OUTPUT]["haproxy-3"]["address"] == "10.89.0.33"
    graph = run_program("dev", previous_outputs=dict(first.outputs))
    [leave] = [r for r in graph.resources if r.name.endswith("-leave")]
    assert leave.name == "pgha-dev-haproxy-haproxy-3-leave"
    assert "docker stop -t 120 pgha-dev-haproxy-3" in leave.inputs["create"]
    assert "pgha-handover: haproxy-3 does not hold the virtual IP" in leave.inputs["stdin"]
    gate = next(r for r in graph.resources if r.name == "pgha-dev-haproxy-haproxy-1-after-leavers")
    by_urn = {r.urn: r.name for r in graph.resources}
    assert leave.name in {by_urn.get(u) for u in gate.dependencies}, "the first node that stays waits for it"
    assert graph.outputs[PLAN_OUTPUT][TOPOLOGY_KEY][0].startswith("1. haproxy: haproxy-3 hands the virtual IP over")


def addressed(**moves: str) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The default topology with addresses, before and after the hosts in `moves` went to new addresses."""
    old = {h: {**f, "address": f"10.0.0.{i}"} for i, (h, f) in enumerate(applied().items(), 1)}
    new = {h: {**f, "address": moves.get(h.replace("-", "_"), f["address"])} for h, f in old.items()}
    return old, new


def test_a_host_moved_to_a_new_address_is_planned_and_an_etcd_majority_moved_is_refused() -> None:
    old, new = addressed(etcd_3="10.0.0.99", pg_3="10.0.0.98")
    assert topology.refusals(old, new) == []
    steps = topology.steps(old, new)
    assert steps[0] == ("1. etcd: etcd-3 moves from 10.0.0.3 to 10.0.0.99: its identity at 10.0.0.3 is removed and "
                        "it joins anew as a learner, promoted once it has caught up (data it brings along is set "
                        "aside)")
    assert steps[1].startswith("2. postgres: pg-3 moves from 10.0.0.6 to 10.0.0.98: it leaves from 10.0.0.6")
    assert [s.split(". ", 1)[1].split(":")[0] for s in steps[2:]] == ["patroni", "haproxy"]
    # Two of three etcd members moved in one deployment would replace a majority; so would one moved and one
    # removed. The same members moved one per deployment are allowed.
    old, new = addressed(etcd_2="10.0.0.97", etcd_3="10.0.0.99")
    [refusal] = topology.refusals(old, new)
    assert refusal.startswith("etcd.members: moving etcd-2, etcd-3 to a new address (2 of the 3 members) in one "
                              "deployment would replace a majority of the etcd cluster")
    five = {h: {**f, "address": f"10.0.1.{i}"} for i, (h, f) in enumerate(applied(etcd=5).items(), 1)}
    fewer = {h: {**f, "address": "10.0.1.99" if h == "etcd-1" else f["address"]} for h, f in five.items()
             if h not in ("etcd-4", "etcd-5")}
    [refusal] = topology.refusals(five, fewer)
    assert "removing etcd-4, etcd-5 and moving etcd-1 to a new address (3 of the 5 members)" in refusal
    # Nothing moved (or no address recorded by an earlier version): no step.
    assert topology.steps(*addressed()) == [] and topology.steps(applied(), addressed(etcd_3="10.0.0.99")[1]) == []
