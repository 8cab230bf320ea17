"""PostgreSQL nodes leaving and joining a running cluster (operations/postgres_membership.py): who, in which
order, the scripts, and where the program puts their steps."""

from __future__ import annotations

import re
import subprocess
from typing import Any

import pytest

from config import collect, parse
from operations import postgres_membership as membership
from targets import base as target_base
from targets.base import Member
from tests.support.mock_runtime import deps, run_program, stack_config


def cfg_of(variant: str = "dev") -> Any:
    return parse(collect(stack_config(variant)[0]))


def live(*roles: tuple[str, str]) -> list[Member]:
    return [Member(name, f"10.89.0.{20 + int(name.rsplit('-', 1)[1])}", role, "streaming") for name, role in roles]


def test_the_members_the_stack_no_longer_has_leave_the_leader_last() -> None:
    members = live(("pg-1", "replica"), ("pg-4", "leader"), ("pg-2", "sync_standby"), ("pg-5", "replica"),
                   ("pg-3", "replica"))
    assert [m.name for m in membership.leaving(cfg_of(), members)] == ["pg-5", "pg-4"]
    stopped = [m if m.name != "pg-5" else Member("pg-5", m.address, "replica", "stopped") for m in members]
    assert [m.name for m in membership.leaving(cfg_of(), stopped)] == ["pg-4"], "a stopped member has no roles"
    assert membership.leaving(cfg_of(), None) == [] and membership.joining(cfg_of(), None) == []
    assert [n.name for n in membership.joining(cfg_of(), live(("pg-1", "leader")))] == ["pg-2", "pg-3"]
    # pg-2 listed at an old address moves: it leaves from there and joins at its configured one.
    moved = [*live(("pg-1", "leader"), ("pg-3", "replica")), Member("pg-2", "10.89.0.99", "sync_standby", "streaming")]
    assert [(m.name, m.address) for m in membership.leaving(cfg_of(), moved)] == [("pg-2", "10.89.0.99")]
    assert [n.name for n in membership.joining(cfg_of(), moved)] == ["pg-2"]
    assert membership.running(stopped) == ["pg-1", "pg-4", "pg-2", "pg-3"] and membership.running(None) is None


def test_slot_names_follow_patronis_rule() -> None:
    assert membership.slot_name("pg-4") == "pg_4" and membership.slot_name("Node.A") == "node_a"


def pythons(script: str) -> list[str]:
    return re.findall(r"<<'PGHA_PY'\n(.*?)PGHA_PY\n", script, re.S)


@pytest.mark.parametrize("variant", ["dev", "prod"])
def test_the_scripts_are_valid_bash_and_python(variant: str) -> None:
    cfg = cfg_of(variant)
    leave, forget = membership.render_leave(cfg, "pg-4"), membership.render_forget(cfg)
    for script in (leave, forget):
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
        for code in pythons(script):
            compile(code, "<step>", "exec")
    assert len(pythons(leave)) == 2, "the handover, then the tags"
    assert "pgha-leave: pg-4: Patroni does not answer: it left already" in leave
    assert "python3 - pg-1,pg-2,pg-3 pg_1,pg_2,pg_3 1800 <<'PGHA_PY'" in forget


def test_the_retention_it_restores_is_the_configured_one() -> None:
    raw = collect(stack_config("dev")[0])
    cfg = parse({**raw, "patroni": {**raw.get("patroni", {}), "member_slots_ttl": 600}})
    forget = membership.render_forget(cfg)
    assert "python3 - pg-1,pg-2,pg-3 pg_1,pg_2,pg_3 600 <<'PGHA_PY'" in forget
    assert '"--set", f"member_slots_ttl={seconds}"' in forget


def test_leaving_nodes_go_before_any_node_that_stays_takes_the_new_configuration(
        monkeypatch: pytest.MonkeyPatch) -> None:
    members = [{"name": n, "host": f"10.89.0.2{n[-1]}", "role": r, "state": "streaming"}
               for n, r in (("pg-1", "replica"), ("pg-2", "sync_standby"), ("pg-3", "replica"), ("pg-4", "leader"),
                            ("pg-5", "replica"))]
    monkeypatch.setattr(target_base, "fetch_json",
                        lambda url: {"members": members} if url.endswith("/cluster") else None)
    graph = run_program("dev")
    leaves = [r for r in graph.resources if r.name.endswith("-leave")]
    assert [r.name for r in leaves] == ["pgha-dev-postgres-pg-5-leave", "pgha-dev-postgres-pg-4-leave"]
    assert "pgha-dev-postgres-pg-5-leave" in deps(graph, "pgha-dev-postgres-pg-4-leave"), "one after the other"
    docker_stop = leaves[1].inputs["create"]
    assert "docker exec -i pgha-dev-pg-4 bash -s" in docker_stop and "docker stop -t 120 pgha-dev-pg-4" in docker_stop
    for node in ("pg-1", "pg-2", "pg-3"):
        waits = {r.name: deps(graph, r.name) for r in graph.resources if r.name.startswith(f"pgha-dev-{node}-patroni")}
        assert any("pgha-dev-postgres-pg-4-leave" in d for d in waits.values()), node
    assert "pgha-dev-pg-3-patroni-service" in deps(graph, "pgha-dev-postgres-membership")


def test_joining_nodes_come_after_the_nodes_that_stay(monkeypatch: pytest.MonkeyPatch) -> None:
    members = [{"name": "pg-1", "host": "10.89.0.21", "role": "leader", "state": "running"},
               {"name": "pg-2", "host": "10.89.0.22", "role": "sync_standby", "state": "streaming"}]
    monkeypatch.setattr(target_base, "fetch_json",
                        lambda url: {"members": members} if url.endswith("/cluster") else None)
    graph = run_program("dev")
    # pg-3 is new to the running cluster: it waits for the leader (pg-1, last of the nodes that stay).
    assert "pgha-dev-pg-1-patroni-service" in deps(graph, "pgha-dev-pg-3-patroni-handover")
    assert not [r for r in graph.resources if r.name.endswith("-leave")]
