"""Patroni timing, pg_hba, synchronous replication and backups, on hand-built stacks."""

from __future__ import annotations

import pytest

from tests.policy.support import (
    CRON,
    PATRONI,
    PGBACKREST,
    build_stack,
    hba,
    healthy_files,
    messages,
    patroni_yml,
    pgbackrest_conf,
    violations,
)

MEMBERS = ["pg-1", "pg-2", "pg-3"]
POLICIES = ["patroni-timing", "pg-hba-no-weak-auth", "pg-tls", "pg-hba-replication-members",
            "sync-replication-production", "backup-schedule-retention"]


def with_patroni(text: str, node: str = "pg-1", target: str = "docker", stack: str = "dev") -> list:
    files = healthy_files()
    files[node][PATRONI] = text
    return build_stack(files, target=target, stack=stack)


@pytest.mark.parametrize("target", ["docker", "ssh"])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_healthy_nodes_pass(target: str, stack: str) -> None:
    resources = build_stack(healthy_files(), target=target, stack=stack)
    for name in POLICIES:
        assert violations(name, resources) == [], name


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_timing_below_minimums_and_over_budget_fails(target: str) -> None:
    text = messages("patroni-timing", with_patroni(
        patroni_yml("pg-1", MEMBERS, dcs={"ttl": 10, "loop_wait": 0, "retry_timeout": 6}), target=target))
    assert text.startswith("pg-1: /etc/patroni/patroni.yml bootstrap.dcs: ttl 10 is below the minimum 20; loop_wait "
                           "0 is below the minimum 1; loop_wait + 2*retry_timeout = 0 + 2*6 = 12 exceeds ttl 10 ")


def test_timing_budget_alone_fails_and_minimums_are_configurable() -> None:
    resources = with_patroni(patroni_yml("pg-1", MEMBERS, dcs={"ttl": 20, "loop_wait": 5, "retry_timeout": 8}))
    assert "loop_wait + 2*retry_timeout = 5 + 2*8 = 21 exceeds ttl 20" in messages("patroni-timing", resources)
    healthy = build_stack(healthy_files())
    assert "ttl 20 is below the minimum 30" in messages("patroni-timing", healthy, {"minTtl": 30})


def test_timing_left_out_uses_patronis_defaults_and_bad_yaml_fails() -> None:
    resources = with_patroni(patroni_yml("pg-1", MEMBERS, dcs={"ttl": None, "loop_wait": None, "retry_timeout": None}))
    assert violations("patroni-timing", resources) == []  # Patroni's 30/10/10
    assert "is not a YAML mapping" in messages("patroni-timing", with_patroni("- not\n- a mapping\n"))
    assert "ttl is 'soon', not a whole number of seconds" in messages("patroni-timing", with_patroni(
        patroni_yml("pg-1", MEMBERS, dcs={"ttl": "soon"})))


@pytest.mark.parametrize("method", ["trust", "password", "md5"])
def test_weak_method_on_a_network_rule_fails(method: str) -> None:
    rules = [*hba(["10.0.0.21", "10.0.0.22", "10.0.0.23"]), f"host all all 0.0.0.0/0 {method}"]
    text = messages("pg-hba-no-weak-auth", with_patroni(patroni_yml("pg-1", MEMBERS, rules=rules)))
    assert text == (f"pg-1: /etc/patroni/patroni.yml bootstrap.dcs.postgresql.pg_hba allows {method} over the "
                    f"network: 'host all all 0.0.0.0/0 {method}'; use scram-sha-256 (forbidden on host rules: md5, "
                    "password, trust)")


def test_trust_on_a_local_socket_rule_passes_but_postgresql_pg_hba_is_checked_too() -> None:
    rules = ["local all postgres trust", *hba(["10.0.0.21", "10.0.0.22", "10.0.0.23"])]
    assert violations("pg-hba-no-weak-auth", with_patroni(patroni_yml("pg-1", MEMBERS, rules=rules))) == []
    local = [*hba(["10.0.0.21"]), "hostssl all all 10.0.0.0/8 md5"]
    text = messages("pg-hba-no-weak-auth", with_patroni(patroni_yml("pg-1", MEMBERS, local_rules=local)))
    assert "postgresql.pg_hba allows md5 over the network" in text


def test_no_pg_hba_at_all_fails() -> None:
    text = messages("pg-hba-no-weak-auth", with_patroni(patroni_yml("pg-1", MEMBERS, rules=None)))
    assert text.startswith("pg-1: /etc/patroni/patroni.yml has no pg_hba rules (neither "
                           "bootstrap.dcs.postgresql.pg_hba nor postgresql.pg_hba)")


@pytest.mark.parametrize("kind", ["host", "hostnossl"])
def test_a_network_rule_without_tls_fails(kind: str) -> None:
    rules = [*hba(["10.0.0.21", "10.0.0.22", "10.0.0.23"]), f"{kind} all all 10.0.0.0/24 scram-sha-256"]
    text = messages("pg-tls", with_patroni(patroni_yml("pg-1", MEMBERS, rules=rules)))
    assert text == ("pg-1: /etc/patroni/patroni.yml bootstrap.dcs.postgresql.pg_hba admits connections without TLS "
                    f"from beyond loopback: '{kind} all all 10.0.0.0/24 scram-sha-256'; use hostssl")


def test_loopback_reject_and_encrypted_rules_pass_tls() -> None:
    rules = [*hba(["10.0.0.21", "10.0.0.22", "10.0.0.23"]), "host all all 127.0.0.0/8 scram-sha-256",
             "host all all ::1/128 scram-sha-256", "host all all samehost scram-sha-256",
             "host all all 0.0.0.0/0 reject", "hostgssenc all all 10.0.0.0/24 gss"]
    assert violations("pg-tls", with_patroni(patroni_yml("pg-1", MEMBERS, rules=rules))) == []


@pytest.mark.parametrize(("ssl", "state"), [("off", "'off'"), (False, "False"), (None, "not set (PostgreSQL's "
                                                                                        "default is off)")])
def test_ssl_off_or_missing_fails(ssl: object, state: str) -> None:
    text = messages("pg-tls", with_patroni(patroni_yml("pg-1", MEMBERS, ssl=ssl)))
    assert text.startswith(f"pg-1: /etc/patroni/patroni.yml postgresql.parameters.ssl is {state}; passwords and data "
                           "would cross the network in plain text")


def test_replication_rule_missing_for_a_member_or_loopback_fails() -> None:
    # pg-3 (10.0.0.23) and loopback are missing.
    rules = ["host all all 127.0.0.1/32 scram-sha-256",
             "host replication replicator 10.0.0.21/32 scram-sha-256",
             "host replication replicator 10.0.0.22/32 scram-sha-256"]
    text = messages("pg-hba-replication-members", with_patroni(patroni_yml("pg-1", MEMBERS, rules=rules)))
    assert text.startswith("pg-1: /etc/patroni/patroni.yml has no pg_hba rule admitting replication as replicator "
                           "from 127.0.0.1, 10.0.0.23; ")


def test_replication_covered_by_a_subnet_passes_and_an_earlier_reject_fails() -> None:
    subnet = ["host replication replicator 127.0.0.1/32 scram-sha-256",
              "host replication all 10.0.0.0/24 scram-sha-256"]
    assert violations("pg-hba-replication-members", with_patroni(patroni_yml("pg-1", MEMBERS, rules=subnet))) == []
    rejecting = ["host replication all 10.0.0.22/32 reject", *subnet]
    assert "from 10.0.0.22;" in messages("pg-hba-replication-members",
                                         with_patroni(patroni_yml("pg-1", MEMBERS, rules=rejecting)))


def test_replication_without_any_pg_hba_lists_every_source() -> None:
    text = messages("pg-hba-replication-members", with_patroni(patroni_yml("pg-1", MEMBERS, rules=None)))
    assert "from 127.0.0.1, 10.0.0.21, 10.0.0.22, 10.0.0.23;" in text


@pytest.mark.parametrize("mode", [False, "off", None])
def test_asynchronous_production_stack_fails(mode: object) -> None:
    text = messages("sync-replication-production",
                    with_patroni(patroni_yml("pg-1", MEMBERS, dcs={"synchronous_mode": mode}), stack="prod"))
    state = "not set (Patroni's default is off)" if mode is None else repr(mode)
    assert text.startswith(f"pg-1: /etc/patroni/patroni.yml bootstrap.dcs.synchronous_mode is {state}; stack 'prod' "
                           "counts as production (productionStacks: prod, production, prod-*)")


@pytest.mark.parametrize("mode", [True, "on", "quorum"])
def test_synchronous_modes_pass_in_production(mode: object) -> None:
    resources = with_patroni(patroni_yml("pg-1", MEMBERS, dcs={"synchronous_mode": mode}), stack="prod-eu")
    assert violations("sync-replication-production", resources) == []


def test_asynchronous_is_fine_outside_production_and_patterns_are_configurable() -> None:
    resources = with_patroni(patroni_yml("pg-1", MEMBERS, dcs={"synchronous_mode": False}), stack="dev")
    assert violations("sync-replication-production", resources) == []
    assert "stack 'dev' counts as production (productionStacks: d*)" in messages(
        "sync-replication-production", resources, {"productionStacks": ["d*"]})


def test_backups_without_retention_or_schedule_fail() -> None:
    files = healthy_files()
    files["pg-1"][PGBACKREST] = pgbackrest_conf(retention=None)
    files["pg-2"][CRON] = "SHELL=/bin/bash\n# nothing scheduled\n"
    files["pg-3"][PGBACKREST] = pgbackrest_conf(retention="0")
    found = violations("backup-schedule-retention", build_stack(files))
    assert [m.split(":")[0] for m, _ in found] == ["pg-1", "pg-2", "pg-3"]
    assert "/etc/pgbackrest/pgbackrest.conf sets no repo1-retention-full" in found[0][0]
    assert found[1][0] == "pg-2: /etc/cron.d/pgha-backup schedules no backup"
    assert "repo1-retention-full is '0'; at least 1 is required" in found[2][0]


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_backups_missing_entirely_fail(target: str) -> None:
    files = healthy_files()
    del files["pg-1"][PGBACKREST], files["pg-1"][CRON]
    assert messages("backup-schedule-retention", build_stack(files, target=target)) == (
        "pg-1: no pgbackrest.conf; no backup schedule (no file in /etc/cron.d)")


def test_unknown_contents_during_preview_are_not_judged() -> None:
    files = healthy_files()
    for node in MEMBERS:
        files[node] = dict.fromkeys(files[node])  # every content unknown, as in a first preview
    resources = build_stack(files, stack="prod", passwords={})
    for name in POLICIES:
        assert violations(name, resources) == [], name
