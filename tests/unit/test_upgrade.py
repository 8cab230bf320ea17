"""The rolling upgrade of the docker target (a new node image): pre-checks first, then one node at a time,
the leader last after a handover; what each step runs, and in which order."""

from __future__ import annotations

import itertools
import re
import subprocess
from collections.abc import Callable
from typing import Any

import pytest

from config import ConfigError, collect, parse
from operations.change_plan import APPLIED_OUTPUT, PLAN_OUTPUT
from operations.upgrade import drain_seconds, render_handover, render_precheck, render_vip_handover
from render.keepalived import render_haproxy_ready
from render.paths import VIP_RELEASE
from targets import base as target_base
from tests.support.mock_runtime import SSH_KEY, Graph, deps, prod_ssh, run_program, stack_config

CONTAINER = "docker:index/container:Container"


def python_of(script: str) -> str:
    return re.search(r"<<'PGHA_PY'\n(.*)PGHA_PY\n", script, re.S).group(1)  # type: ignore[union-attr]


def test_the_scripts_are_valid_python_with_the_stack_limits() -> None:
    cfg = parse({**collect(stack_config("dev")[0]), "upgrade": {"max_transaction_s": 42}})
    precheck = render_precheck(cfg)
    assert "python3 - 42 <<'PGHA_PY'" in precheck and "/config" in precheck, "the lag limit Patroni applies"
    compile(python_of(precheck), "precheck", "exec")
    handover = render_handover(cfg, "pg-2")
    assert "python3 - pg-2 /etc/patroni/patroni.yml" in handover
    compile(python_of(handover), "handover", "exec")
    assert render_precheck(cfg) == precheck, "the same script every run (no set ordering in it)"


def test_the_old_leader_waits_for_haproxy_and_an_haproxy_node_gives_the_virtual_ip_up_first() -> None:
    cfg = parse(collect(stack_config("dev")[0]))
    check = cfg.haproxy.check
    assert drain_seconds(cfg) == (check.inter_ms + (check.fall - 1) * check.fastinter_ms) / 1000 + 0.5
    assert f"drain_end = time.monotonic() + {drain_seconds(cfg)}" in render_handover(cfg, "pg-1")
    graph = run_program("dev")
    tag = graph.of_type("docker:index/image:Image")[0].inputs["imageName"]
    for node in ("haproxy-1", "haproxy-2"):
        step = graph.named(f"pgha-dev-haproxy-{node}-handover")
        assert step.inputs["triggers"] == [tag]
        assert step.name in deps(graph, f"pgha-dev-haproxy-{node}"), "the container waits for the address to move"
        script = step.inputs["stdin"]
        assert f"grep -F ' {cfg.haproxy.virtual_ip}/'" in script and VIP_RELEASE in script
        subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    ready = render_haproxy_ready()
    assert ready.index(VIP_RELEASE) < ready.index("pgrep"), "a released node fails its check whatever HAProxy does"
    without = parse({**collect(stack_config("dev")[0]), "haproxy": {**collect(stack_config("dev")[0])["haproxy"],
                                                                      "virtual_ip": None}})
    with pytest.raises(ValueError, match=r"haproxy\.virtual_ip"):
        render_vip_handover(without, "haproxy-1")


def test_a_new_image_revision_is_a_build_argument_and_a_new_tag() -> None:
    plain, bumped = (run_program("dev", overrides).of_type("docker:index/image:Image")[0].inputs
                     for overrides in ({}, {"pgha:docker": {"image_revision": 1}}))
    assert "PGHA_IMAGE_REVISION" not in plain["build"]["args"], "revision 0 keeps existing tags"
    assert bumped["build"]["args"]["PGHA_IMAGE_REVISION"] == "1"
    assert plain["imageName"] != bumped["imageName"]


def test_postgres_containers_follow_one_another_each_after_its_handover_and_the_precheck() -> None:
    graph = run_program("dev")
    gate = graph.named("pgha-dev-upgrade-precheck")
    tag = graph.of_type("docker:index/image:Image")[0].inputs["imageName"]
    assert gate.inputs["triggers"] == [tag], "it runs again for every new image"
    assert "nothing to check" in gate.inputs["update"], "a change of its settings alone checks nothing"
    for i, node in enumerate(("pg-1", "pg-2", "pg-3")):
        handover = graph.named(f"pgha-dev-{node}-patroni-handover")
        assert handover.inputs["triggers"] == [tag]
        assert handover.inputs["update"].startswith("cat >/dev/null;"), "a changed script alone runs nothing"
        assert "pgha-dev-upgrade-precheck" in deps(graph, handover.name)
        assert handover.name in deps(graph, f"pgha-dev-{node}-patroni"), "the container waits for its handover"
        if i:
            before = f"pgha-dev-pg-{i}-patroni-service"
            assert before in deps(graph, handover.name), f"{node} goes after the node before it is back"
    for container in graph.of_type(CONTAINER):
        assert "pgha-dev-upgrade-precheck" in deps(graph, container.name), "a refused upgrade replaces none"
    for group in (("etcd-1", "etcd-2", "etcd-3"), ("haproxy-1", "haproxy-2")):
        prefix = "pgha-dev-etcd" if group[0].startswith("etcd") else "pgha-dev-haproxy"
        for before, after in itertools.pairwise(group):
            assert f"{prefix}-{before}-service" in deps(graph, f"{prefix}-{after}"), after


def cluster_led_by(leader: str | None) -> Callable[[str], Any]:
    """A stand-in for the program's GET of Patroni's /cluster: pg-1..3, `leader` leads (None: no answer)."""
    def fetch(url: str) -> Any:
        if leader is None or not url.endswith("/cluster"):
            return None
        return {"members": [{"name": f"pg-{i}", "host": f"10.89.0.2{i}", "state": "running" if f"pg-{i}" == leader
                             else "streaming", "role": "leader" if f"pg-{i}" == leader else "replica"}
                            for i in (1, 2, 3)]}
    return fetch


def test_the_leader_goes_last_and_published_ports_do_not_move(monkeypatch: pytest.MonkeyPatch) -> None:
    ports = {c.name: c.inputs["ports"] for c in run_program("dev").of_type(CONTAINER)}
    monkeypatch.setattr(target_base, "fetch_json", cluster_led_by("pg-1"))
    graph = run_program("dev")
    assert "pgha-dev-pg-1-patroni-service" not in deps(graph, "pgha-dev-pg-2-patroni-handover")
    assert "pgha-dev-pg-3-patroni-service" in deps(graph, "pgha-dev-pg-1-patroni-handover"), "pg-1 last"
    assert "pgha-dev-pg-2-patroni-service" in deps(graph, "pgha-dev-pg-3-patroni-handover")
    assert {c.name: c.inputs["ports"] for c in graph.of_type(CONTAINER)} == ports
    assert graph.outputs["patroni_rest_urls"][0].startswith("https://10.89.0.21:"), "outputs in the configured order"


def closure(graph: Graph, name: str) -> set[str]:
    """Every resource `name` waits for, directly or through others."""
    by_urn = {r.urn: r for r in graph.resources}
    seen: set[str] = set()
    todo = list(graph.named(name).dependencies)
    while todo:
        urn = todo.pop()
        if urn in seen or urn not in by_urn:
            continue
        seen.add(urn)
        todo.extend(by_urn[urn].dependencies)
    return {by_urn[u].name for u in seen}


@pytest.mark.parametrize("leader", [None, "pg-1", "pg-3"])
def test_no_passwords_step_waits_for_a_converge_so_the_leaders_runs_at_once(leader: str | None,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Each node's passwords step waits for the leader's: a chain through the converges would deadlock."""
    index = {"pg-1": 0, "pg-2": 1, "pg-3": 2}
    monkeypatch.setattr(target_base, "fetch_json", cluster_led_by(leader))
    graph = run_program("dev")
    for node in index:
        waits = closure(graph, f"pgha-dev-{node}-patroni-passwords")
        assert not {w for w in waits if w.endswith("-patroni-service") or w.endswith("-handover")}, (node, waits)
    # The positive control: the same closure sees the rolling chain through the converges.
    assert "pgha-dev-pg-1-patroni-service" in closure(graph, "pgha-dev-pg-3-patroni-handover") or leader is not None
    assert "pgha-dev-pg-2-patroni-passwords" in closure(graph, "pgha-dev-pg-2-patroni-service")


# ------------------------------------------------------------------------------------------ ssh: pinned packages

PINS = {"patroni": "4.0.7-3~deb13u1+pgha1", "haproxy": "3.0.11-1+deb13u5"}


def pinned(pins: dict[str, str] | None = PINS) -> Graph:
    ssh = prod_ssh(packages=pins or {})
    return run_program("prod", {"ssh": ssh}, secrets_config={"sshPrivateKey": SSH_KEY})


def test_pins_are_checked_against_what_pgha_installs_and_apt_version_syntax() -> None:
    raw = collect(stack_config("prod")[0])
    unknown = "packages.postgresql-16: not a package pgha installs; pin one of"
    for packages, message in (({"postgresql-16": "16.1-1"}, unknown),
                              ({"haproxy": "latest"}, "ssh.packages.haproxy: String should match pattern"),
                              ({"haproxy": "1.0; rm -rf /"}, "ssh.packages.haproxy: String should match pattern")):
        with pytest.raises(ConfigError, match=re.escape(message)):
            parse({**raw, "ssh": {**raw["ssh"], "packages": packages}})
    cfg = parse({**raw, "ssh": {**raw["ssh"], "packages": {"haproxy": "1:2.0~rc1+b2-3"}}})
    assert cfg.ssh is not None and cfg.ssh.pins(["keepalived", "haproxy"]) == {"haproxy": "1:2.0~rc1+b2-3"}


def test_a_pin_rolls_one_host_at_a_time_postgresql_after_every_pre_check() -> None:
    graph = pinned()
    names = {r.name for r in graph.resources}
    steps = sorted(n for n in names if n.endswith("-packages"))
    # Only the hosts whose packages carry a pin get the step: etcd's do not.
    assert steps == ["pgha-prod-haproxy-haproxy-1-packages", "pgha-prod-haproxy-haproxy-2-packages",
                     *(f"pgha-prod-pg-{i}-patroni-packages" for i in (1, 2, 3))]
    gates = [f"pgha-prod-pg-{i}-packages-precheck" for i in (1, 2, 3)]
    for i in (1, 2, 3):
        step = f"pgha-prod-pg-{i}-patroni-packages"
        assert set(gates) <= set(deps(graph, step)), "every pre-check before any PostgreSQL host changes"
        assert step in deps(graph, f"pgha-prod-pg-{i}-patroni-service"), "the packages before the converge"
        if i > 1:
            assert f"pgha-prod-pg-{i - 1}-patroni-service" in deps(graph, step), "one host after the other"
        script = graph.named(step).inputs["stdin"]
        assert "for pin in 'patroni=4.0.7-3~deb13u1+pgha1'; do" in script and "haproxy" not in script
        assert script.index("is not offered") < script.index("pgha-handover") < script.index("--allow-downgrades")
        assert "systemctl restart pgha-patroni" in script and "pgha-dcs-sync" not in script
    haproxy = graph.named("pgha-prod-haproxy-haproxy-2-packages")
    assert "pgha-prod-haproxy-haproxy-1-service" in deps(graph, haproxy.name)
    assert not set(gates) & set(deps(graph, haproxy.name))
    script = haproxy.inputs["stdin"]
    assert "systemctl reload pgha-haproxy" in script
    # A reload moves nothing; only a restart of keepalived (its package changed) gives the virtual IP up first.
    assert re.search(r"if touched keepalived; then\n[^\n]*\nholds\(\)", script), script
    gate = graph.named(gates[0]).inputs
    assert gate["triggers"] == ["patroni=4.0.7-3~deb13u1+pgha1"], "it runs again only for new PostgreSQL pins"
    assert "cat >/dev/null" in gate["update"]
    install = graph.named("pgha-prod-pg-1-patroni-install").inputs["stdin"]
    assert "patroni=4.0.7-3~deb13u1+pgha1" in install, "a new host installs the pinned version"


def test_no_pin_no_step_and_the_plan_says_what_a_pin_does() -> None:
    plain = pinned(None)
    assert not [r.name for r in plain.resources if "packages" in r.name]
    graph = run_program("prod", {"ssh": prod_ssh(packages=PINS)}, secrets_config={"sshPrivateKey": SSH_KEY},
                        previous_outputs={APPLIED_OUTPUT: plain.outputs[APPLIED_OUTPUT]})
    plan = graph.outputs[PLAN_OUTPUT]
    assert plan["pg-1"] == ["install: patroni unpinned -> 4.0.7-3~deb13u1+pgha1 (one host at a time, PostgreSQL "
                            "after its pre-checks)",
                            "restart: patroni (new packages: patroni; a leader switches over first)"]
    assert plan["haproxy-1"] == ["install: haproxy unpinned -> 3.0.11-1+deb13u5 (one host at a time, PostgreSQL "
                                 "after its pre-checks)", "reload: haproxy (new packages: haproxy)"]
    assert plan["etcd-1"] == ["nothing"]


def test_the_ssh_target_asks_each_hosts_patroni_for_the_leader(monkeypatch: pytest.MonkeyPatch) -> None:
    """The leader goes last on hosts too (the program asks the REST API at the host's address); offline
    (the mock runtime, the policy pack's evaluation) nothing but loopback is asked."""
    from targets.ssh import SshTarget

    cfg = parse(collect(stack_config("prod")[0]))
    asked: list[str] = []
    led = cluster_led_by("pg-1")
    monkeypatch.setattr(target_base, "fetch_json",
                        lambda url: asked.append(url) or (led(url) if url.startswith("https://192.0.2.22:") else None))
    target = SshTarget(cfg, SSH_KEY)
    order = target.rolling_order(list(cfg.postgres.nodes), target.postgres_members(list(cfg.postgres.nodes)))
    assert [n.name for n in order] == ["pg-2", "pg-3", "pg-1"]
    assert asked == [f"https://192.0.2.2{i}:8008/cluster" for i in (1, 2)], "it stops at the first that answers"
    asked.clear()
    graph = pinned()
    assert not asked, "the offline evaluation asked a host"
    assert "pgha-prod-pg-1-patroni-service" in deps(graph, "pgha-prod-pg-2-patroni-packages"), "configured order"
