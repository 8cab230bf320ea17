"""The policies over the resource graph the real program (and its components, composed badly) declares."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from policy import inventory, pack
from policy.engine import Violation, analyze, policy_resources
from policy.evaluate import run_program
from tests.policy import bodies

SECRETS = {"prod": {"sshPrivateKey": "test-only-key"}, "dev": {}}


def check(stack: str, body: Callable[[], None] | None = None, preview: bool = False) -> list[Violation]:
    graph = run_program(stack, preview=preview, secrets_config=SECRETS[stack], body=body)
    return analyze(pack.POLICIES, policy_resources(graph), {})


@pytest.mark.parametrize("preview", [False, True])
@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_real_stacks_pass_every_policy(stack: str, preview: bool) -> None:
    assert check(stack, preview=preview) == []


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_the_policies_see_every_service_and_its_files(stack: str) -> None:
    view = inventory.build(policy_resources(run_program(stack, secrets_config=SECRETS[stack])).resources)
    assert view.stack == stack
    assert [s.label for s in view.by_role("etcd")] == ["etcd-1", "etcd-2", "etcd-3"]
    assert [s.label for s in view.by_role("postgres")] == ["pg-1", "pg-2", "pg-3"]
    assert [s.label for s in view.by_role("haproxy")] == ["haproxy-1", "haproxy-2"]
    assert len(view.passwords) == 10
    for service in view.by_role("postgres"):
        assert [kind for kind in ("patroni", "pgbackrest", "cron") if not service.known(kind)] == []
    for service in view.by_role("haproxy"):
        assert service.known("haproxy") and service.known("keepalived")


CLUSTER = {"dev": "urn:pulumi:dev::pgha::pgha:index:PostgresCluster::pgha-dev",
           "prod": "urn:pulumi:prod::pgha::pgha:index:PostgresCluster::pgha-prod"}
BAD_TOPOLOGIES = [
    (bodies.two_etcd, "etcd-min-members",
     "found 2 etcd members (etcd-1, etcd-2); at least 3 and an odd number are required"),
    (bodies.four_etcd, "etcd-min-members",
     "found 4 etcd members (etcd-1, etcd-2, etcd-3, etcd-4); at least 3 and an odd number are required"),
    (bodies.two_postgres, "postgres-min-nodes", "found 2 PostgreSQL nodes (pg-1, pg-2); at least 3 are required"),
    (bodies.one_haproxy, "haproxy-min-nodes", "found 1 HAProxy node (haproxy-1); at least 2 are required"),
]


@pytest.mark.parametrize("stack", ["dev", "prod"])
@pytest.mark.parametrize(("body", "policy", "message"), BAD_TOPOLOGIES, ids=lambda x: getattr(x, "__name__", ""))
def test_components_composed_below_the_minimums_fail(stack: str, body: Callable[[], None], policy: str,
                                                     message: str) -> None:
    found = check(stack, body)
    assert [(v.policy, v.level.value, v.urn) for v in found] == [(policy, "mandatory", CLUSTER[stack])]
    assert found[0].message.startswith(message + " (")


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_hand_written_password_fails(stack: str) -> None:
    found = check(stack, bodies.literal_superuser)
    assert {v.policy for v in found} == {"no-literal-credentials"}
    assert sorted(v.message.split(":")[0] for v in found) == ["pg-1", "pg-2", "pg-3"]
    assert "postgresql.authentication.superuser.password is a literal" in found[0].message
    assert all(bodies.LITERAL_PASSWORD not in v.message for v in found)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_a_trust_rule_on_the_network_fails(stack: str) -> None:
    found = {v.policy: v.message for v in check(stack, bodies.trust_rule)}
    # No password, no TLS, every role (the superuser too) and from everywhere.
    assert set(found) == {"pg-hba-no-weak-auth", "pg-tls", "pg-hba-roles", "client-networks-bounded"}
    assert f"allows trust over the network: '{bodies.TRUST_RULE}'" in found["pg-hba-no-weak-auth"]
    assert f"admits connections without TLS from beyond loopback: '{bodies.TRUST_RULE}'" in found["pg-tls"]


def test_a_hand_written_password_is_caught_during_preview_too() -> None:
    # Generated passwords are unknown in a first preview; a literal is known, so it cannot be one of them.
    found = check("dev", bodies.literal_superuser, preview=True)
    assert {v.policy for v in found} <= {"no-literal-credentials"}
