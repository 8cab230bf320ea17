"""A host rebuilt empty: its raised generation (pgha:host_generations) makes every command of its services run
again as on a new host (ssh), or its container new (docker); it only goes up, and is refused for a
PostgreSQL node that runs."""

from __future__ import annotations

from typing import Any

import pytest

from config import ConfigError, collect, parse
from operations import topology
from operations.change_plan import APPLIED_OUTPUT, node_actions
from tests.support.mock_runtime import SSH_KEY, run_program, stack_config


def raw(variant: str) -> dict[str, Any]:
    return collect(stack_config(variant)[0])


def test_only_hosts_of_the_stack_have_a_generation() -> None:
    with pytest.raises(ConfigError, match=r"host_generations.pg-9: not a host of this stack"):
        parse({**raw("dev"), "host_generations": {"pg-9": 1}})
    with pytest.raises(ConfigError, match=r"host_generations"):
        parse({**raw("dev"), "host_generations": {"pg-2": -1}})
    assert parse({**raw("dev"), "host_generations": {"pg-2": 2}}).generation(parse(raw("dev")).postgres.nodes[1]) == 2


def test_a_raised_generation_replaces_that_hosts_commands_only_on_ssh() -> None:
    plain = run_program("prod", secrets_config={"sshPrivateKey": SSH_KEY})
    rebuilt = run_program("prod", {"pgha:host_generations": {"pg-2": 1, "etcd-3": 1}},
                          secrets_config={"sshPrivateKey": SSH_KEY})
    triggers = {r.name: r.inputs.get("triggers") for r in rebuilt.resources if r.type.startswith("command:remote")}
    assert triggers["pgha-prod-pg-2-patroni-install"] == ["host generation 1"]
    assert triggers["pgha-prod-pg-2-patroni-service"] == ["host generation 1"]
    assert triggers["pgha-prod-pg-2-patroni-passwords"] == ["host generation 1"]
    assert triggers["pgha-prod-etcd-etcd-3-service"] == ["host generation 1"]
    assert not triggers["pgha-prod-pg-1-patroni-service"] and not triggers["pgha-prod-etcd-etcd-1-service"]
    before = {r.name: r.inputs.get("triggers") for r in plain.resources if r.type.startswith("command:remote")}
    assert not before["pgha-prod-pg-2-patroni-service"], "no generation set: nothing changes for existing stacks"
    assert rebuilt.outputs[APPLIED_OUTPUT]["pg-2"]["generation"] == 1


def test_a_raised_generation_is_a_new_container_on_docker() -> None:
    graph = run_program("dev", {"pgha:host_generations": {"pg-2": 1}})
    labels = {r.name: {lbl["label"]: lbl["value"] for lbl in r.inputs["labels"]}
              for r in graph.of_type("docker:index/container:Container")}
    assert labels["pgha-dev-pg-2-patroni"]["pgha.generation"] == "host generation 1"
    assert "pgha.generation" not in labels["pgha-dev-pg-1-patroni"]
    # Its data volume is a new one too: the one it had is lost with the host.
    names = {r.name: r.inputs["name"] for r in graph.of_type("docker:index/volume:Volume")}
    assert names["pgha-dev-pg-2-patroni-data"] == "pgha-dev-pg-2-patroni-data-g1"
    assert names["pgha-dev-pg-1-patroni-data"] == "pgha-dev-pg-1-patroni-data"


def test_the_plan_says_it_and_a_generation_only_goes_up() -> None:
    assert node_actions({"generation": 0}, {"generation": 1})[0].startswith(
        "replace: host generation 0 -> 1: every command of the host runs again as on a new host")
    hosts = {"pg-1": "postgres", "pg-2": "postgres", "pg-3": "postgres", "etcd-1": "etcd", "haproxy-1": "haproxy"}
    old = {h: {"role": r, "generation": 2 if h == "pg-2" else 0, **({"etcd_tls": 1} if r == "etcd" else {})}
           for h, r in hosts.items()}
    new = {h: {"role": r, "generation": 1 if h == "pg-2" else 0} for h, r in hosts.items()}
    [lower] = topology.refusals(old, new, live=["pg-1", "pg-3"])
    assert lower.startswith("host_generations.pg-2: 2 -> 1; a generation only goes up")
    raised = {h: {**f, "generation": 3 if h == "pg-2" else 0} for h, f in new.items()}
    [running] = topology.refusals(old, raised, live=["pg-1", "pg-2", "pg-3"])
    assert running.startswith("host_generations.pg-2: raised to 3 while pg-2 is a running member of the cluster")
    assert topology.refusals(old, raised, live=["pg-1", "pg-3"]) == [], "rebuilt empty: it is not a member"
