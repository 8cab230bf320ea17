"""Config models: both stack files are valid, and every rejection names field, value and rule."""

from __future__ import annotations

import copy
from typing import Any

import pydantic
import pytest
import yaml

from config import ConfigError, collect, parse
from config.models import TIMING_PROFILES
from tests.support.mock_runtime import ROOT, stack_config


def raw(stack: str) -> dict[str, Any]:
    return collect(stack_config(stack)[0])


def with_change(stack: str, path: str, value: Any) -> dict[str, Any]:
    data = copy.deepcopy(raw(stack))
    *parents, leaf = path.split(".")
    node = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if isinstance(node, list):
        node[int(leaf)] = value
    elif value is DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return data


DELETE = object()


def hosts(prefix: str, count: int, base: str = "10.89.0.", start: int = 100) -> list[dict[str, str]]:
    return [{"name": f"{prefix}-{i + 1}", "address": f"{base}{start + i}"} for i in range(count)]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_stack_files_are_valid(stack: str) -> None:
    cfg = parse(raw(stack))
    assert len(cfg.etcd.members) == 3
    assert len(cfg.postgres.nodes) == 3
    assert len(cfg.haproxy.nodes) == 2
    assert cfg.target == {"dev": "docker", "prod": "ssh"}[stack]
    assert cfg.patroni.synchronous_mode != "off"


def test_stack_files_only_use_the_pgha_namespace() -> None:
    for stack in ("dev", "prod"):
        doc = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
        assert all(key.startswith("pgha:") for key in doc["config"])


def test_scaled_variant_is_valid() -> None:
    data = raw("dev")
    data["etcd"]["members"] = hosts("etcd", 5, start=40)
    data["postgres"]["nodes"] = hosts("pg", 5, start=50)
    cfg = parse(data)
    assert len(cfg.etcd.members) == 5 and len(cfg.postgres.nodes) == 5


def test_defaults_are_the_tuned_profile() -> None:
    cfg = parse(raw("dev"))
    tuned = TIMING_PROFILES["tuned"]
    assert (cfg.patroni.ttl, cfg.patroni.loop_wait, cfg.patroni.retry_timeout) == tuple(tuned["patroni"].values())
    assert cfg.haproxy.check.inter_ms == tuned["check"]["inter_ms"]


def test_conservative_profile_is_one_setting_away() -> None:
    data = raw("dev") | {"timing_profile": "conservative"}
    cfg = parse(data)
    assert (cfg.patroni.ttl, cfg.patroni.loop_wait, cfg.patroni.retry_timeout) == (30, 10, 10)
    assert (cfg.haproxy.check.inter_ms, cfg.haproxy.check.fall, cfg.haproxy.check.rise) == (3000, 3, 2)


def test_explicit_timing_wins_over_profile() -> None:
    data = with_change("dev", "patroni.ttl", 40)
    assert parse(data).patroni.ttl == 40


REJECTIONS = [
    # (stack, path, value, expected fragments of the message)
    ("dev", "etcd.members", hosts("etcd", 1), ["pgha:etcd.members", "1 given", "odd number of at least 3"]),
    ("dev", "etcd.members", hosts("etcd", 2), ["pgha:etcd.members", "2 given", "odd number of at least 3"]),
    ("dev", "etcd.members", hosts("etcd", 4), ["pgha:etcd.members", "4 given", "odd number"]),
    ("dev", "postgres.nodes", hosts("pg", 2), ["pgha:postgres.nodes", "2 given", "at least 3 PostgreSQL nodes"]),
    ("dev", "haproxy.nodes", hosts("hap", 1), ["pgha:haproxy.nodes", "1 given", "at least 2 HAProxy nodes"]),
    ("dev", "postgres.nodes.1", {"name": "pg-1", "address": "10.89.0.22"},
     ["pgha:postgres.nodes", "duplicate name 'pg-1'"]),
    ("dev", "postgres.nodes.1", {"name": "pg-9", "address": "10.89.0.21"},
     ["pgha:postgres.nodes", "duplicate address '10.89.0.21'"]),
    ("dev", "haproxy.nodes.0", {"name": "pg-1", "address": "10.89.0.31"},
     ["pgha:haproxy.nodes[0].name", "'pg-1' is already used by postgres.nodes"]),
    ("dev", "postgres.client_cidrs", ["0.0.0.0/0"],
     ["pgha:postgres", "client_cidrs: 0.0.0.0/0 given", "at most a /8", "0.0.0.0/0 is everyone"]),
    ("prod", "postgres.client_cidrs", ["198.51.100.0/24", "64.0.0.0/2"], ["client_cidrs: 64.0.0.0/2 given"]),
    ("dev", "patroni.ttl", 19, ["pgha:patroni.ttl", "greater than or equal to 20", "given: 19"]),
    ("dev", "patroni.loop_wait", 0, ["pgha:patroni.loop_wait", "greater than or equal to 1", "given: 0"]),
    ("dev", "patroni.retry_timeout", 2, ["pgha:patroni.retry_timeout", "greater than or equal to 3", "given: 2"]),
    ("dev", "patroni.retry_timeout", 10,
     ["pgha:patroni", "loop_wait + 2*retry_timeout = 3 + 2*10 = 23 exceeds ttl 20"]),
    ("prod", "haproxy.virtual_ip", DELETE, ["pgha:haproxy.virtual_ip", "missing", "ssh target"]),
    ("prod", "haproxy.virtual_ip", "192.0.2.300", ["pgha:haproxy.virtual_ip", "IPv4", "192.0.2.300"]),
    ("prod", "haproxy.virtual_ip", "192.0.2.31", ["pgha:haproxy", "virtual_ip 192.0.2.31 is also a node address"]),
    ("dev", "postgres.port", 70000, ["pgha:postgres.port", "less than or equal to 65535", "70000"]),
    ("dev", "haproxy.stats_port", 0, ["pgha:haproxy.stats_port", "greater than or equal to 1"]),
    ("dev", "haproxy.read_only_port", 5000, ["pgha:haproxy", "must all differ"]),
    ("dev", "etcd.peer_port", 2379, ["pgha:etcd", "client_port and peer_port are both 2379"]),
    ("dev", "etcd.bogus", 1, ["pgha:etcd.bogus", "unknown key"]),
    ("dev", "postgres.nodes.0", {"name": "pg-1", "address": "10.89.0.21", "role": "x"},
     ["pgha:postgres.nodes[0].role", "unknown key"]),
    ("dev", "synchronous", True, ["pgha:synchronous", "unknown key"]),
    ("dev", "patroni.synchronous_mode", "always", ["pgha:patroni.synchronous_mode", "'off', 'on', 'strict'", "always"]),
    ("dev", "postgres.parameters", {"archive_command": "/bin/true"},
     ["pgha:postgres.parameters", "archive_command cannot be set"]),
    ("dev", "postgres.nodes.0", {"name": "Pg_1", "address": "10.89.0.21"}, ["pgha:postgres.nodes[0].name", "Pg_1"]),
    ("dev", "postgres.nodes.0", {"name": "pg-1", "address": "10.90.0.21"},
     ["pgha:postgres.nodes[0].address", "10.90.0.21 must be a host address of docker.subnet 10.89.0.0/24"]),
    ("dev", "backup.full_schedule", "every sunday", ["pgha:backup.full_schedule", "every sunday"]),
    ("dev", "timing_profile", "fast", ["pgha:timing_profile", "'tuned' or 'conservative'", "fast"]),
    ("dev", "target", "kubernetes", ["pgha:target", "'docker' or 'ssh'", "kubernetes"]),
    ("dev", "ssh", {"user": "root"}, ["pgha:ssh", "target is 'docker'"]),
    ("dev", "firewall", {"enabled": True}, ["pgha:firewall", "target is 'docker'", "the ssh target's"]),
    ("prod", "firewall.ssh_from", [], ["pgha:firewall", "ssh_from: [] given", "connects over SSH"]),
    ("prod", "firewall.ssh_from", ["203.0.113.1/24"], ["pgha:firewall.ssh_from", "host bits set", "203.0.113.1/24"]),
    ("prod", "firewall.ssh_ports", [2222], ["pgha:firewall.ssh_ports", "[2222] given without ssh.port 22",
                                            "open both first"]),
    ("prod", "firewall.ssh_ports", [22, 22], ["pgha:firewall", "ssh_ports: [22, 22] given; list each port once"]),
    ("prod", "firewall.ssh_ports", [0], ["pgha:firewall.ssh_ports[0]", "greater than or equal to 1"]),
    ("prod", "firewall.admin_from", ["example.org"], ["pgha:firewall.admin_from[0]", "example.org"]),
    ("prod", "firewall.allow", [{"port": 9100, "sources": []}],
     ["pgha:firewall.allow[0].sources", "at least 1 item"]),
    ("prod", "firewall.allow", [{"port": 161, "protocol": "sctp", "sources": ["10.0.0.0/8"]}],
     ["pgha:firewall.allow[0].protocol", "'tcp' or 'udp'", "sctp"]),
    ("prod", "firewall.allow", [{"port": 9100, "from": ["10.0.0.0/8"], "sources": ["10.0.0.0/8"]}],
     ["pgha:firewall.allow[0].from", "unknown key"]),
    ("prod", "firewall.enable", False, ["pgha:firewall.enable", "unknown key"]),
]


@pytest.mark.parametrize(("stack", "path", "value", "fragments"), REJECTIONS, ids=[r[1] + "=" + repr(r[2])[:20]
                                                                                 for r in REJECTIONS])
def test_rejections_name_field_value_and_rule(stack: str, path: str, value: Any, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(with_change(stack, path, value))
    message = str(caught.value)
    assert message.startswith("invalid stack configuration:")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_the_firewall_is_on_by_default_on_ssh_and_absent_on_docker() -> None:
    data = raw("prod")
    del data["firewall"]
    fw = parse(data).firewall_settings
    assert fw is not None and fw.enabled and fw.ssh_ports is None and fw.admin_from == [] and fw.allow == []
    assert [str(n) for n in fw.ssh_from] == ["0.0.0.0/0", "::/0"]
    assert parse(raw("dev")).firewall_settings is None


def test_moving_ssh_to_another_port_opens_both_first_and_nftables_can_be_pinned() -> None:
    data = raw("prod")
    data["firewall"] = {**data["firewall"], "ssh_ports": [22, 2222]}
    assert parse(data).firewall_settings.ssh_ports == [22, 2222]  # type: ignore[union-attr]
    data["ssh"] = {**data["ssh"], "port": 2222, "packages": {"nftables": "1.1.3-1"}}
    assert parse(data).ssh.pins(["nftables"]) == {"nftables": "1.1.3-1"}  # type: ignore[union-attr]
    data["firewall"] = {"enabled": False, "ssh_ports": [22]}  # not checked when the firewall is off
    assert parse(data).firewall_settings.enabled is False  # type: ignore[union-attr]


def test_port_clash_on_a_shared_ssh_host() -> None:
    data = raw("prod")
    data["postgres"]["nodes"][0]["address"] = "192.0.2.11"  # co-located with etcd-1
    data["postgres"]["port"] = 2379
    with pytest.raises(ConfigError, match=r"pgha:postgres.port: port 2379 on 192.0.2.11 is also claimed by "
                                          r"etcd.client_port"):
        parse(data)


def test_co_location_without_clash_is_allowed_on_ssh() -> None:
    data = raw("prod")
    data["postgres"]["nodes"][0]["address"] = "192.0.2.11"
    assert parse(data).postgres.nodes[0].address.exploded == "192.0.2.11"


def test_every_problem_is_reported_at_once() -> None:
    data = raw("dev")
    data["patroni"] = {"ttl": 5}
    data["haproxy"]["oops"] = 1
    with pytest.raises(ConfigError) as caught:
        parse(data)
    message = str(caught.value)
    assert "pgha:patroni.ttl" in message and "pgha:haproxy.oops" in message


def test_virtual_router_id_is_derived_per_cluster_and_overridable() -> None:
    a = parse(raw("dev"))
    b = parse(raw("dev") | {"name": "pgha-other"})
    assert 1 <= a.virtual_router_id <= 255 and a.virtual_router_id != b.virtual_router_id
    data = with_change("dev", "haproxy.virtual_router_id", 42)
    assert parse(data).virtual_router_id == 42


def test_models_are_frozen() -> None:
    cfg = parse(raw("dev"))
    with pytest.raises(pydantic.ValidationError, match="frozen"):
        cfg.patroni.ttl = 99  # type: ignore[misc]


def test_client_cidrs_up_to_a_slash_8_are_accepted() -> None:
    """The control of the width rejection: the largest private network is a client network."""
    cfg = parse(with_change("prod", "postgres.client_cidrs", ["10.0.0.0/8", "198.51.100.7/32"]))
    assert [str(c) for c in cfg.postgres.client_cidrs] == ["10.0.0.0/8", "198.51.100.7/32"]
