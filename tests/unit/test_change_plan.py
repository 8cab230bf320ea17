"""The change plan (operations/change_plan.py): what a later deployment says it will do to each node, computed
from the previous deployment's `applied_configuration` output, for each change kind, on both targets."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from operations.change_plan import APPLIED_OUTPUT, PLAN_OUTPUT, node_actions, render, verbs
from tests.support.mock_runtime import SSH_KEY, Graph, reveal, run_program

STACK_FILES = {"dev": "Pulumi.dev.yaml", "prod": "Pulumi.prod.yaml"}
ETCD, PG, HAPROXY = ["etcd-1", "etcd-2", "etcd-3"], ["pg-1", "pg-2", "pg-3"], ["haproxy-1", "haproxy-2"]


def deploy(stack: str, overrides: dict[str, Any] | None = None, previous: dict[str, Any] | None = None,
           preview: bool = False) -> Graph:
    return run_program(stack, overrides, preview=preview, previous_outputs=previous,
                       secrets_config={"sshPrivateKey": SSH_KEY} if stack == "prod" else None)


def stack_config(stack: str) -> dict[str, Any]:
    from policy.evaluate import ROOT

    return yaml.safe_load((ROOT / STACK_FILES[stack]).read_text())["config"]


def section(stack: str, key: str, **changes: Any) -> dict[str, Any]:
    value = copy.deepcopy(stack_config(stack)[f"pgha:{key}"])
    for name, change in changes.items():
        value[name] = {**value.get(name, {}), **change} if isinstance(change, dict) else change
    return {f"pgha:{key}": value}


@pytest.fixture(scope="module", params=["dev", "prod"])
def first(request: pytest.FixtureRequest) -> Graph:
    return deploy(request.param)


def later(first: Graph, overrides: dict[str, Any] | None = None, preview: bool = True) -> dict[str, list[str]]:
    """The plan a later deployment (a preview by default) of `first`'s stack says, node -> actions."""
    graph = deploy(first.stack, overrides, previous=dict(first.outputs), preview=preview)
    return graph.outputs[PLAN_OUTPUT]


def test_a_first_deployment_creates_every_node(first: Graph) -> None:
    assert first.outputs[PLAN_OUTPUT] == {n: ["create"] for n in [*ETCD, *PG, *HAPROXY]}


def test_the_applied_configuration_is_plain_and_holds_no_secret(first: Graph) -> None:
    applied = first.outputs[APPLIED_OUTPUT]
    assert APPLIED_OUTPUT not in first.secret_outputs and PLAN_OUTPUT not in first.secret_outputs
    assert set(applied) == {*ETCD, *PG, *HAPROXY}
    shared = stack_config(first.stack)["pgha:postgres"]["parameters"]["shared_buffers"]
    assert applied["pg-1"]["parameters"]["shared_buffers"] == shared
    patroni = applied["pg-1"]["processes"]["patroni"]
    assert patroni == {"on_change": "reload", "reads": patroni["reads"], "upgrade": "restart",
                       "packages": ["postgresql-17", "patroni", "python3-etcd", "python3-psycopg2"],
                       "restart_reads": ["/etc/patroni/etcd-connection.yml"]}
    assert "/etc/patroni/patroni.yml" in applied["pg-1"]["files"]
    text = str(applied)
    passwords = [reveal(p.outputs["result"]) for p in first.of_type("random:index/randomPassword:RandomPassword")]
    assert passwords and not [p for p in passwords if p in text]
    # The positive control: the same search finds a password where one is.
    assert [p for p in passwords if p in str(reveal(first.outputs["app_dsn"]))]


def test_no_change_is_nothing_everywhere_and_known_in_a_preview(first: Graph) -> None:
    assert later(first) == {n: ["nothing"] for n in [*ETCD, *PG, *HAPROXY]}


def test_a_reload_parameter_is_a_reload_of_the_postgres_nodes_only(first: Graph) -> None:
    params = {**stack_config(first.stack)["pgha:postgres"].get("parameters", {}), "work_mem": "6MB"}
    before = first.outputs[APPLIED_OUTPUT]["pg-1"]["parameters"].get("work_mem", "(unset)")
    plan = later(first, section(first.stack, "postgres", parameters=params))
    for node in PG:
        assert verbs(plan[node]) == {"reload"}, plan[node]
        assert f"reload: PostgreSQL for work_mem {before} -> 6MB" in plan[node], plan[node]
    assert all(plan[n] == ["nothing"] for n in [*ETCD, *HAPROXY])


def test_a_restart_parameter_is_a_rolling_restart(first: Graph) -> None:
    params = {**stack_config(first.stack)["pgha:postgres"].get("parameters", {}), "shared_buffers": "160MB"}
    old = stack_config(first.stack)["pgha:postgres"]["parameters"]["shared_buffers"]
    plan = later(first, section(first.stack, "postgres", parameters=params))
    for node in PG:
        assert f"restart: PostgreSQL for shared_buffers {old} -> 160MB (one member at a time, replicas first, the " \
               "leader last, in place)" in plan[node], plan[node]
        assert "restart" in verbs(plan[node]) and "replace" not in verbs(plan[node])
    assert all(plan[n] == ["nothing"] for n in [*ETCD, *HAPROXY])


def test_a_patroni_setting_is_a_reload_of_the_dynamic_configuration(first: Graph) -> None:
    plan = later(first, section(first.stack, "patroni", maximum_lag_on_failover=2097152))
    for node in PG:
        assert "reload: Patroni's dynamic configuration for maximum_lag_on_failover 1048576 -> 2097152" in plan[node]
        assert "restart" not in verbs(plan[node])


def test_haproxy_check_timing_reloads_haproxy_only(first: Graph) -> None:
    plan = later(first, section(first.stack, "haproxy", check={"inter_ms": 1500}))
    for node in HAPROXY:
        assert plan[node] == ["reload: haproxy (/etc/haproxy/haproxy.cfg)"], plan[node]
    assert all(plan[n] == ["nothing"] for n in [*ETCD, *PG])


def test_a_new_base_image_replaces_every_container_on_docker() -> None:
    first = deploy("dev")
    plan = later(first, {"pgha:docker": {**stack_config("dev")["pgha:docker"], "base_image": "debian:trixie"}})
    for node in [*ETCD, *PG, *HAPROXY]:
        assert "replace" in verbs(plan[node]), plan[node]


def test_nodes_added_and_removed_are_said() -> None:
    old = {"a": {"role": "etcd", "files": {}}, "b": {"role": "etcd", "files": {}}}
    new = {"a": {"role": "etcd", "files": {}}, "c": {"role": "etcd", "files": {}}}
    from operations.change_plan import plan

    assert plan(old, new) == {"a": ["nothing"], "c": ["create"], "b": ["remove"]}


def test_an_etcd_config_change_restarts_etcd_and_a_file_nobody_reads_is_only_written() -> None:
    processes = {"etcd": {"on_change": "restart", "reads": ["/etc/pgha/etcd.yml"]}}
    old = {"role": "etcd", "files": {"/etc/pgha/etcd.yml": "1", "/etc/x": "1"}, "processes": processes}
    assert node_actions(old, {**old, "files": {"/etc/pgha/etcd.yml": "2", "/etc/x": "1"}}) == [
        "restart: etcd (/etc/pgha/etcd.yml)"]
    assert node_actions(old, {**old, "files": {"/etc/pgha/etcd.yml": "1", "/etc/x": "2"}}) == [
        "write: /etc/x (read when next used)"]


def test_the_rendered_plan_is_a_readable_list() -> None:
    text = render("pgha-dev", {"pg-1": ["restart: PostgreSQL for shared_buffers 128MB -> 160MB", "reload: patroni"],
                               "etcd-1": ["nothing"]})
    assert text.splitlines() == [
        "pgha change plan for pgha-dev (what this deployment does to each node):",
        "  pg-1    restart: PostgreSQL for shared_buffers 128MB -> 160MB",
        "          reload: patroni",
        "  etcd-1  nothing",
    ]


def test_a_rotation_is_said_on_the_nodes_that_carry_the_credential(first: Graph) -> None:
    plan = later(first, {"pgha:rotate": {"app": 1, "stats": 1}})
    for node in PG:
        assert plan[node] == ["rotate: app (a new password: PostgreSQL's roles first, then every file that "
                              "carries it, by reload)"], plan[node]
    for node in HAPROXY:
        assert verbs(plan[node]) == {"rotate"} and "stats" in plan[node][0]
    assert all(plan[n] == ["nothing"] for n in ETCD)


def test_an_etcd_rotation_is_said_on_the_postgres_nodes_and_a_generation_never_recorded_is_zero(
        first: Graph) -> None:
    plan = later(first, {"pgha:rotate": {"etcd": 1}})
    for node in PG:
        assert plan[node] == ["rotate: etcd (a new etcd user for Patroni first, then patroni.yml by reload; the "
                              "earlier user goes once every Patroni logs in as the new one)",
                              "reload: patroni (/etc/patroni/patroni.yml)"], plan[node]
    assert all(plan[n] == ["nothing"] for n in [*ETCD, *HAPROXY])
    # A previous version recorded no generation for the etcd password: the same as 0, nothing rotates.
    old = {"role": "postgres", "files": {}, "credentials": {"app": 0}}
    assert node_actions(old, {**old, "credentials": {"app": 0, "etcd": 0}}) == ["nothing"]
    assert node_actions(old, {**old, "credentials": {"app": 0, "etcd": 1}})[0].startswith("rotate: etcd")


def test_a_ca_rotation_and_its_end_are_said_on_the_postgres_nodes_and_restart_etcd(first: Graph) -> None:
    start = later(first, {"pgha:tls": {"ca_generation": 1, "trust_previous_ca": True}})
    for node in PG:
        assert start[node] == ["rotate: the CA, generation 0 -> 1: a new server certificate; the previous CA stays "
                               "trusted and cross-signs the new one (PostgreSQL reloads)"], start[node]
    # etcd reads its CA bundle only when it starts.
    assert all(start[n] == ["restart: etcd for its CA bundle, ca_generation 0 -> 1, trust_previous_ca False -> True "
                            "(etcd reads it only when it starts; one member at a time)"] for n in ETCD), start
    assert all(start[n] == ["nothing"] for n in HAPROXY)
    middle = deploy(first.stack, {"pgha:tls": {"ca_generation": 1, "trust_previous_ca": True}},
                    previous=dict(first.outputs))
    end = later(middle, {"pgha:tls": {"ca_generation": 1}})
    assert all(end[n] == ["reload: TLS trust, the previous CA dropped (and its cross-signature)"] for n in PG), end
    assert all(end[n] == ["restart: etcd for its CA bundle, trust_previous_ca True -> False (etcd reads it only when "
                          "it starts; one member at a time)"] for n in ETCD), end
    renew = later(first, {"pgha:tls": {"server_validity_days": 365}})
    assert all(renew[n] == ["rotate: the server certificate, server_validity_days 730 -> 365 (PostgreSQL reloads)"]
               for n in PG), renew


def test_a_new_host_firewall_ruleset_is_said_to_be_loaded_by_its_step() -> None:
    processes = {"etcd": {"on_change": "restart", "reads": ["/etc/pgha/etcd.yml"]}}
    old = {"role": "etcd", "files": {"/etc/pgha/etcd.yml": "1", "/etc/pgha/firewall.nft": "1"}, "processes": processes}
    assert node_actions(old, {**old, "files": {"/etc/pgha/etcd.yml": "1", "/etc/pgha/firewall.nft": "2"}}) == [
        "write: /etc/pgha/firewall.nft (loaded by nft: what it adds at once, the whole ruleset at the deployment's "
        "end)"]


def test_how_patroni_connects_to_etcd_restarts_it_paused_and_the_rest_reloads_it() -> None:
    processes = {"patroni": {"on_change": "reload", "reads": ["/etc/patroni/patroni.yml", "/etc/patroni/etcd.yml"],
                             "restart_reads": ["/etc/patroni/etcd.yml"]}}
    old = {"role": "postgres", "files": {"/etc/patroni/patroni.yml": "1", "/etc/patroni/etcd.yml": "1"},
           "processes": processes}
    assert node_actions(old, {**old, "files": {"/etc/patroni/patroni.yml": "2", "/etc/patroni/etcd.yml": "1"}}) == [
        "reload: patroni (/etc/patroni/patroni.yml)"]
    assert node_actions(old, {**old, "files": {"/etc/patroni/patroni.yml": "2", "/etc/patroni/etcd.yml": "2"}}) == [
        "restart: patroni (/etc/patroni/etcd.yml, /etc/patroni/patroni.yml; it reads /etc/patroni/etcd.yml only when "
        "it starts, paused: PostgreSQL keeps running)"]
    # A node an earlier pgha deployed has no such file yet.
    earlier = {**old, "files": {"/etc/patroni/patroni.yml": "1"}}
    assert verbs(node_actions(earlier, old)) == {"restart"}
