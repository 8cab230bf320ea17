"""The role table and the shared limits: one source that the components, the image and config agree with."""

from __future__ import annotations

import dataclasses

import pytest

from catalog import limits
from catalog.roles import HAPROXY, ROLES, host_packages, image_packages
from components.secrets import PASSWORD_ROLES
from config import models
from render.credentials import Credentials
from tests.support.mock_runtime import run_program


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


def test_the_image_holds_every_package_a_host_gets() -> None:
    assert set(host_packages()) <= set(image_packages())
    assert len(image_packages()) == len(set(image_packages()))


def test_config_minimums_are_the_shared_limits() -> None:
    assert (models.PATRONI_MIN_TTL, models.PATRONI_MIN_LOOP_WAIT, models.PATRONI_MIN_RETRY_TIMEOUT) == (
        limits.PATRONI_MIN_TTL, limits.PATRONI_MIN_LOOP_WAIT, limits.PATRONI_MIN_RETRY_TIMEOUT)
    assert [ROLES[name].minimum for name in ("etcd", "postgres", "haproxy")] == [
        limits.ETCD_MIN_MEMBERS, limits.POSTGRES_MIN_NODES, limits.HAPROXY_MIN_NODES]
