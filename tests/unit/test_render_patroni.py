"""Tests for render.patroni: golden files, pg_hba placement and rules, credentials, replication modes."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from config import ConfigError, parse
from render.credentials import REPLICATION_USER, RESTAPI_USER, REWIND_USER, SUPERUSER
from render.paths import PG_BIN, PG_DATA, PG_TLS_CA, POST_BOOTSTRAP_SCRIPT
from render.patroni import (
    etcd_connection,
    render_dcs_sync_script,
    render_dynamic_config,
    render_etcd_connection,
    render_patroni,
)
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load, variant_raw


def _conf(variant: str = "dev", index: int = 0) -> dict[str, Any]:
    cfg = load(variant)
    return yaml.safe_load(render_patroni(cfg, cfg.postgres.nodes[index], FAKE_CREDS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for node in cfg.postgres.nodes:
        assert_golden(f"{variant}/patroni-{node.name}.yml", render_patroni(cfg, node, FAKE_CREDS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_dynamic_config_golden_and_equal_to_bootstrap_dcs(variant: str) -> None:
    cfg = load(variant)
    text = render_dynamic_config(cfg)
    assert_golden(f"{variant}/dynamic.yml", text)
    # The reconciler replaces the DCS with this file: it must be exactly what bootstrap wrote.
    assert yaml.safe_load(text) == _conf(variant)["bootstrap"]["dcs"]


def test_dcs_sync_script_replaces_only_on_the_leader() -> None:
    cfg = load("dev")
    script = render_dcs_sync_script(cfg)
    assert_golden("dev/pgha-dcs-sync.sh", script)
    lines = [line.strip() for line in script.splitlines()]
    assert lines[0] == "#!/bin/bash"
    url = f"https://127.0.0.1:{cfg.patroni.rest_api_port}/primary"  # HTTPS, verified with the cluster CA
    primary = lines.index(f'if curl --cacert {PG_TLS_CA} -sf -o /dev/null --max-time 5 "{url}"; then')
    replace = next(i for i, line in enumerate(lines) if "edit-config --replace" in line)
    assert primary < replace


@pytest.mark.parametrize("variant", VARIANTS)
def test_pg_hba_is_where_patroni_applies_it(variant: str) -> None:
    conf = _conf(variant)
    bootstrap_hba = conf["bootstrap"]["dcs"]["postgresql"]["pg_hba"]
    assert bootstrap_hba, "bootstrap.dcs.postgresql.pg_hba is what Patroni writes at bootstrap"
    assert conf["postgresql"]["pg_hba"] == bootstrap_hba


@pytest.mark.parametrize("variant", VARIANTS)
def test_pg_hba_rules(variant: str) -> None:
    cfg = load(variant)
    hba = _conf(variant)["postgresql"]["pg_hba"]
    rules = [line.split() for line in hba]
    # The superuser only over the local socket, as the postgres OS user; no other local rule.
    assert [r for r in rules if r[0] == "local"] == [["local", "all", SUPERUSER, "peer"]]
    host_rules = [r for r in rules if r[0] != "local"]
    assert all(r[0] in ("host", "hostssl") and r[-1] == "scram-sha-256" and len(r) == 5 for r in host_rules), hba
    # Plain TCP only over loopback; everything that crosses a network needs TLS.
    assert all(r[0] == "hostssl" for r in host_rules if r[3] != "127.0.0.1/32"), hba
    for bad in ("trust", "md5", "password", "0.0.0.0/0"):
        assert not any(bad in r for r in host_rules), f"{bad} in {hba}"
    members = {f"{n.address}/32" for n in cfg.postgres.nodes}
    clients = {f"{n.address}/32" for n in cfg.haproxy.nodes} | {str(c) for c in cfg.postgres.client_cidrs}
    app_roles = f"{cfg.postgres.app_user},{cfg.postgres.readonly_user}"

    def sources(database: str, users: str) -> set[str]:
        return {r[3] for r in host_rules if r[1:3] == [database, users]}

    # A rejoining former primary replicates over 127.0.0.1 before pg_rewind can run; members stream from the
    # leader; pg_rewind reads the leader's `postgres` database; applications come through HAProxy or their own
    # networks. Nothing else: no rule names `all` users, and the superuser no network rule at all.
    assert sources("replication", REPLICATION_USER) == {"127.0.0.1/32"} | members
    assert sources("postgres", REWIND_USER) == members
    assert sources("all", app_roles) == clients
    assert len(host_rules) == 1 + 2 * len(members) + len(clients), hba
    assert not [r for r in host_rules if "all" in r[2].split(",") or SUPERUSER in r[2].split(",")], hba


def test_passwords_survive_yaml() -> None:
    conf = _conf()
    auth = conf["postgresql"]["authentication"]
    assert auth["superuser"] == {"username": SUPERUSER, "password": FAKE_CREDS.superuser}
    verified = {"sslmode": "verify-full", "sslrootcert": "/etc/patroni/tls/ca.crt"}
    assert auth["replication"] == {"username": REPLICATION_USER, "password": FAKE_CREDS.replication, **verified}
    assert auth["rewind"] == {"username": REWIND_USER, "password": FAKE_CREDS.rewind, **verified}
    assert conf["restapi"]["authentication"] == {"username": RESTAPI_USER, "password": FAKE_CREDS.restapi}


@pytest.mark.parametrize("variant", VARIANTS)
def test_node_identity_and_dcs(variant: str) -> None:
    cfg = load(variant)
    for i, node in enumerate(cfg.postgres.nodes):
        conf = _conf(variant, i)
        assert conf["scope"] == cfg.name
        assert conf["name"] == node.name
        assert conf["namespace"] == f"/pgha/{FAKE_CREDS.dcs_namespace}/"
        assert conf["restapi"]["connect_address"] == f"{node.address}:{cfg.patroni.rest_api_port}"
        assert conf["restapi"]["listen"] == f"0.0.0.0:{cfg.patroni.rest_api_port}"
        assert conf["postgresql"]["connect_address"] == f"{node.address}:{cfg.postgres.port}"
        assert conf["etcd3"]["hosts"] == [f"{m.address}:{cfg.etcd.client_port}" for m in cfg.etcd.members]


@pytest.mark.parametrize("variant", VARIANTS)
def test_timing_is_what_the_config_says(variant: str) -> None:
    cfg = load(variant)
    dcs = _conf(variant)["bootstrap"]["dcs"]
    p = cfg.patroni
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (p.ttl, p.loop_wait, p.retry_timeout)
    assert dcs["maximum_lag_on_failover"] == p.maximum_lag_on_failover
    assert dcs["failsafe_mode"] is p.failsafe_mode
    assert dcs["postgresql"]["use_pg_rewind"] is p.use_pg_rewind
    assert dcs["postgresql"]["use_slots"] is p.use_slots


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("off", {"synchronous_mode": False}),
        ("on", {"synchronous_mode": True, "synchronous_node_count": 1}),
        ("strict", {"synchronous_mode": True, "synchronous_node_count": 1, "synchronous_mode_strict": True}),
        ("quorum", {"synchronous_mode": "quorum", "synchronous_node_count": 1}),
    ],
)
def test_synchronous_modes(mode: str, expected: dict[str, Any]) -> None:
    raw = variant_raw("dev")
    raw["patroni"] = {"synchronous_mode": mode}
    cfg = parse(raw)
    dcs = yaml.safe_load(render_patroni(cfg, cfg.postgres.nodes[0], FAKE_CREDS))["bootstrap"]["dcs"]
    got = {k: v for k, v in dcs.items() if k.startswith("synchronous")}
    assert got == expected


@pytest.mark.parametrize("variant", VARIANTS)
def test_parameters(variant: str) -> None:
    cfg = load(variant)
    params = _conf(variant)["bootstrap"]["dcs"]["postgresql"]["parameters"]
    assert params["wal_level"] == "replica"
    assert params["hot_standby"] == "on"
    assert params["wal_log_hints"] == "on", "use_pg_rewind needs wal_log_hints or checksums"
    assert params["archive_mode"] == "on"
    assert params["archive_command"] == f'pgbackrest --stanza={cfg.stanza} archive-push "%p"'
    assert params["password_encryption"] == "scram-sha-256"
    assert params["max_wal_senders"] >= len(cfg.postgres.nodes) + 5
    assert params["max_replication_slots"] >= len(cfg.postgres.nodes) + 5
    for key, value in cfg.postgres.parameters.items():
        assert params[key] == value


def test_bootstrap_and_local_settings() -> None:
    conf = _conf()
    assert "data-checksums" in conf["bootstrap"]["initdb"]
    assert {"encoding": "UTF8"} in conf["bootstrap"]["initdb"]
    assert conf["bootstrap"]["post_bootstrap"] == POST_BOOTSTRAP_SCRIPT
    pg = conf["postgresql"]
    assert (pg["data_dir"], pg["bin_dir"]) == (PG_DATA, PG_BIN)
    # A new replica restores the newest backup (a delta restore keeps what an earlier try left), and goes on
    # to pg_basebackup from the leader when the repository holds none.
    assert pg["create_replica_methods"] == ["pgbackrest", "basebackup"]
    assert pg["pgbackrest"] == {"command": "pgbackrest --stanza=pgha-dev --delta --type=standby restore",
                                "keep_data": True, "no_params": True}
    assert pg["recovery_conf"]["restore_command"] == 'pgbackrest --stanza=pgha-dev archive-get %f "%p"'


def test_new_replicas_from_the_leader_only_when_the_stack_says_so() -> None:
    raw = variant_raw("dev")
    cfg = parse({**raw, "postgres": {**raw["postgres"], "new_replicas_from": "leader"}})
    pg = yaml.safe_load(render_patroni(cfg, cfg.postgres.nodes[0], FAKE_CREDS))["postgresql"]
    assert pg["create_replica_methods"] == ["basebackup"] and "pgbackrest" not in pg
    with pytest.raises(ConfigError, match=r"new_replicas_from"):
        parse({**raw, "postgres": {**raw["postgres"], "new_replicas_from": "somewhere"}})


def test_a_non_member_is_refused() -> None:
    cfg = load("dev")
    with pytest.raises(ValueError, match=r"not one of postgres\.nodes"):
        render_patroni(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)


def test_the_rest_api_serves_https_and_asks_unsafe_requests_for_a_client_certificate() -> None:
    cfg = load("dev")
    conf = _conf()
    restapi = conf["restapi"]
    assert (restapi["certfile"], restapi["keyfile"], restapi["cafile"]) == (
        "/etc/patroni/tls/server.crt", "/etc/patroni/tls/server.key", PG_TLS_CA)
    # optional: a certificate is required for POST/PUT/PATCH/DELETE only (reads answer HAProxy and monitoring).
    assert restapi["verify_client"] == "optional"
    members = [str(n.address) for n in cfg.postgres.nodes]
    assert restapi["allowlist"] == ["127.0.0.1", *members, *(str(n.address) for n in cfg.haproxy.nodes)]
    assert restapi["allowlist_include_members"] is True
    # patronictl and Patroni's own calls to other members present the node's certificate and verify theirs.
    assert conf["ctl"] == {"certfile": restapi["certfile"], "keyfile": restapi["keyfile"], "cacert": PG_TLS_CA,
                           "insecure": False}
    assert conf["postgresql"]["use_unix_socket"] is True


def test_patroni_logs_in_to_etcd_except_in_the_first_deployment_of_the_move_from_plain_http() -> None:
    raw = variant_raw("prod")
    moving = parse({**raw, "etcd": {**raw["etcd"], "tls_migration": True}})
    for cfg, login in ((load("prod"), True), (moving, False)):
        etcd3 = yaml.safe_load(render_patroni(cfg, cfg.postgres.nodes[0], FAKE_CREDS))["etcd3"]
        # How it connects is the same in both, and is the file whose change restarts it.
        assert {k: etcd3[k] for k in ("protocol", "cacert", "cert", "key")} == etcd_connection()
        assert yaml.safe_load(render_etcd_connection()) == etcd_connection()
        assert etcd_connection()["protocol"] == "https"
        assert (("username" in etcd3) and etcd3.get("password") == FAKE_CREDS.etcd) is login
        assert ("username" in etcd3) is login
