"""Renames in the program keep every live resource: the whole program under the local engine, with fake
providers, deployed as the former version and then as this one."""

from __future__ import annotations

from pathlib import Path

import pytest

import program
from catalog import roles
from components import haproxy_group
from local_engine import Stack
from tests.engine.fake_providers import fakes

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("local_engine.engine.PROVIDERS", fakes())


@pytest.mark.parametrize(("stack", "config"), [("dev", {}), ("prod", {"pgha:sshPrivateKey": "test-only-key"})])
def test_the_haproxy_component_renamed_from_haproxy_pair_replaces_nothing(
        fake: None, monkeypatch: pytest.MonkeyPatch, stack: str, config: dict[str, str]) -> None:
    deployed = Stack(stack, ROOT, project="pgha", config=config, secret_keys=config, log=lambda text: None)
    with monkeypatch.context() as former:  # the program as it was: another type token, no alias
        former.setattr(roles, "HAPROXY", roles.HAPROXY.__class__(**{**roles.HAPROXY.__dict__,
                                                                      "component": "pgha:index:HAProxyPair"}))
        former.setattr(haproxy_group, "HAPROXY", roles.HAPROXY)
        former.setattr(haproxy_group, "FORMER_TYPES", ())
        first = deployed.up(program.main)
    old = {urn for urn in deployed.snapshot if "pgha:index:HAProxyPair" in urn}
    assert len(old) > 3 and all(s.op == "create" for s in first.steps.steps)
    renamed = deployed.up(program.main)
    assert renamed.plan.changes(custom_only=False) == renamed.steps.changes(custom_only=False) == {}
    assert not any("HAProxyPair" in urn for urn in deployed.snapshot), "every resource now has its new URN"
    assert len(deployed.snapshot) == len(first.steps.steps)
    without_alias = Stack(stack, ROOT, project="pgha", config=config, secret_keys=config, log=lambda text: None)
    without_alias.snapshot = dict(deployed.snapshot)
    with monkeypatch.context() as other:  # the positive control: another token without an alias replaces all
        other.setattr(haproxy_group, "HAPROXY", roles.HAPROXY.__class__(**{**roles.HAPROXY.__dict__,
                                                                             "component": "pgha:index:Other"}))
        other.setattr(haproxy_group, "FORMER_TYPES", ())
        plan = without_alias.preview(program.main)
    assert {s.op for s in plan.steps if "haproxy" in s.name and s.custom} == {"create", "delete"}
