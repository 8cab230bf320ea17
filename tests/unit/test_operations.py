"""The day-2 steps (operations/): declared on both targets, after what they act on, re-run when their script changes."""

from __future__ import annotations

import ast

import pytest

from operations import pending_restarts
from tests.support.mock_runtime import SSH_KEY, Graph, reveal, run_program

COMMAND = "command:remote:Command"
LOCAL = "command:local:Command"
STEPS = ["etcd-healthy", "backup-check-pg-1", "backup-check-pg-2", "backup-check-pg-3", "pending-restarts"]


def prod(overrides: dict | None = None) -> Graph:
    return run_program("prod", overrides, secrets_config={"sshPrivateKey": SSH_KEY})


def test_declared_after_every_postgres_node_on_the_first_node() -> None:
    graph = prod()
    step = graph.named("pgha-prod-pending-restarts")
    assert step.type == COMMAND
    for node in ("pg-1", "pg-2", "pg-3"):
        assert graph.named(f"pgha-prod-{node}-patroni-service").urn in step.dependencies
    assert graph.named("pgha-prod-pg-1-patroni-service").inputs["connection"] == step.inputs["connection"]
    script = step.inputs["stdin"]
    assert "patronictl" not in step.inputs["create"], "the script travels on stdin"
    assert "/etc/patroni/dynamic.yml" in script and "dynamic-config=" not in script
    assert step.inputs["triggers"][0].startswith("dynamic-config=")


def test_reruns_exactly_when_the_dynamic_configuration_changes() -> None:
    def inputs(overrides: dict | None = None) -> tuple[str, list[str]]:
        step = prod(overrides).named("pgha-prod-pending-restarts").inputs
        return step["stdin"], step["triggers"]

    base = inputs()
    assert inputs() == base, "same config, same inputs: the step does not run again"
    nodes = [{"name": f"pg-{i}", "address": f"192.0.2.2{i}"} for i in (1, 2, 3)]
    script, triggers = inputs({"postgres": {"nodes": nodes, "client_cidrs": ["198.51.100.0/24"],
                                            "parameters": {"max_connections": 300, "shared_buffers": "8GB"}}})
    assert script == base[0] and triggers != base[1], "a new digest replaces the step: the new one runs"


@pytest.mark.parametrize(("stack", "kind"), [("dev", LOCAL), ("prod", COMMAND)])
def test_every_step_is_declared_on_both_targets(stack: str, kind: str) -> None:
    graph = prod() if stack == "prod" else run_program("dev")
    for step in STEPS:
        assert graph.named(f"pgha-{stack}-{step}").type == kind, step
        assert graph.named(f"pgha-{stack}-{step}").inputs["addPreviousOutputInEnv"] is False


def test_docker_steps_run_in_the_node_container_and_ssh_steps_on_the_host() -> None:
    dev, ssh = run_program("dev"), prod()
    assert dev.named("pgha-dev-etcd-healthy").inputs["create"] == "docker exec -i pgha-dev-etcd-1 bash -s"
    assert dev.named("pgha-dev-backup-check-pg-2").inputs["create"] == "docker exec -i pgha-dev-pg-2 bash -s"
    assert ssh.named("pgha-prod-backup-check-pg-2").inputs["create"] == "bash -s"
    assert reveal(ssh.named("pgha-prod-backup-check-pg-2").inputs["connection"])["host"] == "192.0.2.22"
    assert "runuser -u postgres -- /usr/local/bin/pgha-backup check" in dev.named("pgha-dev-backup-check-pg-2").inputs[
        "stdin"]


def test_patroni_waits_for_a_healthy_etcd_on_both_targets() -> None:
    dev, ssh = run_program("dev"), prod()
    # Through the access-control step, which waits for every member healthy.
    assert dev.named("pgha-dev-etcd-healthy").urn in dev.named("pgha-dev-etcd-access").dependencies
    assert ssh.named("pgha-prod-etcd-healthy").urn in ssh.named("pgha-prod-etcd-access").dependencies
    for node in ("pg-1", "pg-2", "pg-3"):
        assert dev.named("pgha-dev-etcd-access").urn in dev.named(f"pgha-dev-{node}-patroni").dependencies
        assert ssh.named("pgha-prod-etcd-access").urn in ssh.named(f"pgha-prod-{node}-patroni-install").dependencies


def test_the_script_is_python() -> None:
    ast.parse(pending_restarts.SCRIPT)
