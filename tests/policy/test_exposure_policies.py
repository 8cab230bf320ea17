"""pg_hba by role, bounded client networks and HAProxy's source filter, on hand-built stacks."""

from __future__ import annotations

import pytest

from tests.policy.support import (
    HAPROXY,
    PATRONI,
    build_stack,
    haproxy_cfg,
    hba,
    healthy_files,
    messages,
    patroni_yml,
    violations,
)

MEMBERS = ["pg-1", "pg-2", "pg-3"]
ADDRESSES = ["10.0.0.21", "10.0.0.22", "10.0.0.23"]
POLICIES = ["pg-hba-roles", "client-networks-bounded", "haproxy-source-filter"]


def with_rules(rules: list[str] | None, *, local: list[str] | None = None) -> list:
    files = healthy_files()
    files["pg-1"][PATRONI] = patroni_yml("pg-1", MEMBERS, rules=rules, local_rules=local)
    return build_stack(files)


def with_haproxy(text: str) -> list:
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = text
    return build_stack(files)


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_the_programs_shape_passes(target: str) -> None:
    resources = build_stack(healthy_files(), target=target)
    for name in POLICIES:
        assert violations(name, resources) == [], name


@pytest.mark.parametrize(("rule", "expected"), [
    ("hostssl all postgres 10.0.0.21/32 scram-sha-256", "admits the superuser postgres over the network"),
    ("host all all 127.0.0.1/32 scram-sha-256", "admits every role, the superuser included over the network"),
    ("hostssl replication replicator 10.0.0.0/24 scram-sha-256",
     "admits replicator from 10.0.0.0/24, which is not a PostgreSQL member"),
    ("hostssl postgres rewind,app 10.0.0.31/32 scram-sha-256", "admits rewind from 10.0.0.31/32, which is not a"),
])
def test_roles_beyond_their_sources_fail(rule: str, expected: str) -> None:
    text = messages("pg-hba-roles", with_rules([*hba(ADDRESSES), rule]))
    assert f"pg-1: /etc/patroni/patroni.yml bootstrap.dcs.postgresql.pg_hba: '{rule}' {expected}" in text


def test_a_rule_in_the_nodes_own_pg_hba_counts_too_and_reject_rules_do_not() -> None:
    local = [*hba(ADDRESSES), "hostssl all postgres 0.0.0.0/0 reject", "hostssl all postgres 10.0.0.99/32 md5"]
    found = violations("pg-hba-roles", with_rules(hba(ADDRESSES), local=local))
    assert len(found) == 1 and "postgresql.pg_hba: 'hostssl all postgres 10.0.0.99/32 md5'" in found[0][0]


def test_role_names_come_from_the_file_and_default_to_patronis() -> None:
    # Renamed replication user: a rule for it from a non-member fails, the same rule for `replicator` does not.
    text = patroni_yml("pg-1", MEMBERS).replace("username: replicator", "username: streamer")
    files = healthy_files()
    files["pg-1"][PATRONI] = text.replace("hostssl replication replicator 10.0.0.21/32",
                                          "hostssl replication streamer 10.0.0.99/32")
    assert "admits streamer from 10.0.0.99/32" in messages("pg-hba-roles", build_stack(files))
    # No authentication section at all (a property missing): Patroni's default names are checked.
    files["pg-1"][PATRONI] = patroni_yml("pg-1", MEMBERS, rules=[*hba(ADDRESSES),
                                                                "hostssl all postgres 10.0.0.5/32 scram-sha-256"])
    files["pg-1"][PATRONI] = files["pg-1"][PATRONI].replace("authentication:", "authentication_gone:", 1)
    assert "admits the superuser postgres over the network" in messages("pg-hba-roles", build_stack(files))


def test_no_pg_hba_is_left_to_the_weak_auth_policy() -> None:
    assert violations("pg-hba-roles", with_rules(None)) == []
    assert "has no pg_hba rules" in messages("pg-hba-no-weak-auth", with_rules(None))


@pytest.mark.parametrize("address", ["0.0.0.0/0", "all", "samenet", "64.0.0.0/2"])
def test_client_networks_wider_than_the_bound_fail(address: str) -> None:
    rule = f"hostssl all app,app_ro {address} scram-sha-256"
    text = messages("client-networks-bounded", with_rules([*hba(ADDRESSES), rule]))
    assert f"'{rule}' admits {address}, wider than a /8" in text


def test_the_client_network_bound_is_configurable() -> None:
    resources = with_rules(hba(ADDRESSES, clients=("10.0.0.31/32", "172.16.0.0/12")))
    assert violations("client-networks-bounded", resources) == []  # the control: a /12 passes the default /8
    assert "admits 172.16.0.0/12, wider than a /16" in messages("client-networks-bounded", resources,
                                                                 {"minPrefix": 16})


def test_haproxy_sources_wider_than_the_bound_fail() -> None:
    text = messages("client-networks-bounded", with_haproxy(haproxy_cfg("haproxy-1", sources=("0.0.0.0/0",))))
    assert "haproxy-1: /etc/haproxy/haproxy.cfg listen stats: acl clients admits 0.0.0.0/0, wider than a /8" in text


def test_a_listener_without_a_source_filter_fails() -> None:
    text = messages("haproxy-source-filter", with_haproxy(haproxy_cfg("haproxy-1", sources=())))
    assert ("haproxy-1: /etc/haproxy/haproxy.cfg listen stats accepts connections on 10.0.0.31:7000 from any source"
            in text)
    assert "listen postgres_read_write accepts connections on *:5000 from any source" in text


def test_an_acl_that_is_never_used_to_reject_does_not_filter() -> None:
    text = haproxy_cfg("haproxy-1").replace("tcp-request connection reject if !clients",
                                            "tcp-request connection reject if clients")
    found = violations("haproxy-source-filter", with_haproxy(text))
    assert len(found) == 1 and "postgres_read_write accepts connections on *:5000 from any source" in found[0][0]
