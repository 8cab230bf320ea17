"""Tests for targets.firewall: the step refuses a ruleset that would lock the deployment out; its removal goes
with the last claim."""

from __future__ import annotations

import copy
import subprocess
from typing import Any

import pytest

from config import parse
from render import firewall
from targets.firewall import removal_script, ssh_check
from tests.golden_util import load, variant_raw


def prod(**changes: Any) -> Any:
    raw = copy.deepcopy(variant_raw("prod"))
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse(raw)


@pytest.mark.parametrize(("connection", "allowed"), [
    ("203.0.113.7 50000 192.0.2.21 22", True),
    ("203.0.114.7 50000 192.0.2.21 22", False),  # outside ssh_from
    ("203.0.113.7 50000 192.0.2.21 2222", False),  # another port than the rule opens
    ("::ffff:203.0.113.7 50000 ::ffff:192.0.2.21 22", True),
    ("2001:db8::7 50000 2001:db8::21 22", False),  # IPv6 is checked against ::/0 only
    ("", True),  # not over SSH: nothing to lock out
])
def test_the_step_refuses_a_ruleset_that_would_lock_the_deployment_out(connection: str, allowed: bool) -> None:
    script = "set -euo pipefail\n" + ssh_check(load("prod")) + "echo passed\n"
    run = subprocess.run(["bash", "-c", script], env={"SSH_CONNECTION": connection, "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=False)
    assert (run.returncode == 0 and run.stdout == "passed\n") is allowed, run
    if not allowed:
        assert "pgha-firewall: this deployment connects from " in run.stderr
        assert ("which the new ruleset would not let in (pgha:firewall.ssh_from: 203.0.113.0/24; ssh ports: 22)"
                in run.stderr)


def test_everywhere_lets_any_client_in() -> None:
    script = ssh_check(prod(firewall={"ssh_from": ["0.0.0.0/0", "::/0"]})) + "echo passed\n"
    for connection in ("198.18.0.1 1 192.0.2.21 22", "2001:db8::7 1 2001:db8::21 22"):
        run = subprocess.run(["bash", "-c", script], env={"SSH_CONNECTION": connection}, capture_output=True,
                             text=True, check=False)
        assert run.stdout == "passed\n", run


def test_the_removal_keeps_the_table_while_another_service_claims_it() -> None:
    script = removal_script("pgha-prod-etcd-etcd-1")
    assert script.index("rm -f /etc/pgha/firewall.d/pgha-prod-etcd-etcd-1") < script.index("ls -A") < script.index(
        "nft delete table inet pgha")
    assert firewall.FIREWALL_TABLE == "inet pgha"
