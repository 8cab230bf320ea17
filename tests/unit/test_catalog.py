"""The role table and the shared limits: one source that the components, the image and config agree with."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from catalog import limits
from catalog.roles import HAPROXY, HOST_EXTRA_PACKAGES, ROLES, host_packages, image_packages, role_packages
from components.secrets import PASSWORD_ROLES
from config import models
from render.credentials import Credentials
from tests.support.mock_runtime import ROOT, run_program


def test_credentials_are_built_by_name_from_every_password_role() -> None:
    fields = {f.name for f in dataclasses.fields(Credentials)}
    assert fields == {*PASSWORD_ROLES, "dcs_namespace"}


def test_every_role_component_is_declared_with_its_token() -> None:
    declared = {r.type for r in run_program("dev").resources if not r.custom}
    assert {role.component for role in ROLES.values()} <= declared


def test_feature_packages_are_named_and_unknown_features_refused() -> None:
    assert HAPROXY.packages_for(virtual_ip=False) == HAPROXY.packages
    assert set(HAPROXY.packages_for(virtual_ip=True)) - set(HAPROXY.packages) == {"keepalived", "procps"}
    with pytest.raises(ValueError, match=r"role haproxy: unknown feature\(s\) vip \(known: virtual_ip\)"):
        HAPROXY.packages_for(vip=True)


def test_the_image_holds_every_package_a_role_gets() -> None:
    assert set(role_packages()) <= set(image_packages())
    assert len(image_packages()) == len(set(image_packages()))
    # The host firewall is the ssh target's: hosts may install (and pin) nftables, the image does not carry it.
    assert set(host_packages()) - set(role_packages()) == set(HOST_EXTRA_PACKAGES) == {"nftables"}
    assert "nftables" not in image_packages()


def test_config_minimums_are_the_shared_limits() -> None:
    assert (models.PATRONI_MIN_TTL, models.PATRONI_MIN_LOOP_WAIT, models.PATRONI_MIN_RETRY_TIMEOUT) == (
        limits.PATRONI_MIN_TTL, limits.PATRONI_MIN_LOOP_WAIT, limits.PATRONI_MIN_RETRY_TIMEOUT)
    assert [ROLES[name].minimum for name in ("etcd", "postgres", "haproxy")] == [
        limits.ETCD_MIN_MEMBERS, limits.POSTGRES_MIN_NODES, limits.HAPROXY_MIN_NODES]


def test_the_policy_pack_defaults_are_the_shared_limits() -> None:
    from policy import pack

    def default(policy: str, option: str) -> object:
        chosen = next(p for p in pack.POLICIES if p.name == policy)
        assert chosen.config_schema is not None
        return chosen.config_schema.properties[option]["default"]

    assert default("etcd-min-members", "minMembers") == limits.ETCD_MIN_MEMBERS
    assert default("postgres-min-nodes", "minNodes") == limits.POSTGRES_MIN_NODES
    assert default("haproxy-min-nodes", "minNodes") == limits.HAPROXY_MIN_NODES
    assert [default("patroni-timing", o) for o in ("minTtl", "minLoopWait", "minRetryTimeout")] == [
        limits.PATRONI_MIN_TTL, limits.PATRONI_MIN_LOOP_WAIT, limits.PATRONI_MIN_RETRY_TIMEOUT]
    assert default("pg-hba-no-weak-auth", "forbiddenMethods") == list(limits.WEAK_HBA_METHODS)
    assert default("backup-schedule-retention", "minRetentionFull") == limits.BACKUP_MIN_RETENTION_FULL


@pytest.mark.parametrize(("section", "field", "count"), [("etcd", "members", limits.ETCD_MIN_MEMBERS - 1),
                                                        ("postgres", "nodes", limits.POSTGRES_MIN_NODES - 1),
                                                        ("haproxy", "nodes", limits.HAPROXY_MIN_NODES - 1)])
def test_config_and_pack_refuse_the_same_undersized_tier(section: str, field: str, count: int) -> None:
    from config import ConfigError
    from config.load import parse
    from tests.policy import bodies
    from tests.policy.test_program_graph import check

    raw = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    settings = {k.removeprefix("pgha:"): v for k, v in raw.items()}
    settings[section] = {**settings[section], field: settings[section][field][:count]}
    with pytest.raises(ConfigError, match=rf"pgha:{section}.{field}: {count} given"):
        parse(settings)
    body = {"etcd": bodies.two_etcd, "postgres": bodies.two_postgres, "haproxy": bodies.one_haproxy}[section]
    assert [v.message.split(";")[0].split(" (")[0] for v in check("dev", body)] == [
        f"found {count} {ROLES[section].noun(count)}"]
