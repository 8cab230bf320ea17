"""The pending-restart step: declared once on the ssh target after every PostgreSQL node, re-run on change."""

from __future__ import annotations

import ast

from components import rolling_restart
from tests.support.mock_runtime import Graph, run_program

COMMAND = "command:remote:Command"
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-only\n-----END OPENSSH PRIVATE KEY-----\n"


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
    assert "/etc/patroni/dynamic.yml" in script and "dynamic-config=" in script


def test_reruns_exactly_when_the_dynamic_configuration_changes() -> None:
    def stdin(overrides: dict | None = None) -> str:
        return str(prod(overrides).named("pgha-prod-pending-restarts").inputs["stdin"])

    base = stdin()
    assert stdin() == base, "same config, same inputs: the step does not run again"
    changed = stdin({"postgres": {"nodes": [{"name": f"pg-{i}", "address": f"192.0.2.2{i}"} for i in (1, 2, 3)],
                                  "client_cidrs": ["198.51.100.0/24"],
                                  "parameters": {"max_connections": 300, "shared_buffers": "8GB"}}})
    assert changed != base


def test_not_declared_where_services_are_recreated_on_change() -> None:
    graph = run_program("dev")
    assert not [r for r in graph.of_type(COMMAND)]
    assert "pgha-dev-pending-restarts" not in {r.name for r in graph.resources}


def test_the_script_is_python() -> None:
    ast.parse(rolling_restart.SCRIPT)
