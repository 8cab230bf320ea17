"""Member counts, keepalived router ids and port conflicts, on hand-built stacks of both targets."""

from __future__ import annotations

import pytest

from tests.policy.support import (
    ETCD,
    KEEPALIVED,
    PATRONI,
    StackBuilder,
    build_stack,
    healthy_files,
    keepalived_conf,
    manifest,
    messages,
    violations,
)

TARGETS = ["docker", "ssh"]
CLUSTER_URN = "urn:pulumi:dev::pgha::pgha:index:PostgresCluster::pgha-dev"


@pytest.mark.parametrize("target", TARGETS)
def test_healthy_stack_passes_topology_policies(target: str) -> None:
    resources = build_stack(healthy_files(), target=target)
    for name in ("etcd-min-members", "postgres-min-nodes", "haproxy-min-nodes", "keepalived-router-id",
                 "no-port-conflicts"):
        assert violations(name, resources) == [], name


@pytest.mark.parametrize("target", TARGETS)
def test_two_etcd_members_fail_with_what_was_counted(target: str) -> None:
    found = violations("etcd-min-members", build_stack(healthy_files(etcd=2), target=target))
    assert found == [("found 2 etcd members (etcd-1, etcd-2); at least 3 and an odd number are required (a quorum "
                      "of 3 survives the loss of one member; an even count adds no failure tolerance)", CLUSTER_URN)]


@pytest.mark.parametrize("target", TARGETS)
def test_four_etcd_members_fail_as_even(target: str) -> None:
    text = messages("etcd-min-members", build_stack(healthy_files(etcd=4), target=target))
    assert text.startswith("found 4 etcd members (etcd-1, etcd-2, etcd-3, etcd-4); at least 3 and an odd number")


def test_five_etcd_members_pass_and_min_members_is_configurable() -> None:
    resources = build_stack(healthy_files(etcd=5))
    assert violations("etcd-min-members", resources) == []
    assert "at least 7 and an odd number" in messages("etcd-min-members", resources, {"minMembers": 7})


@pytest.mark.parametrize("target", TARGETS)
def test_two_postgres_nodes_and_one_haproxy_node_fail(target: str) -> None:
    resources = build_stack(healthy_files(postgres=2, haproxy=1), target=target)
    assert messages("postgres-min-nodes", resources) == (
        "found 2 PostgreSQL nodes (pg-1, pg-2); at least 3 are required (a primary, a synchronous standby and one "
        "more standby to fail over to)")
    assert messages("haproxy-min-nodes", resources) == (
        "found 1 HAProxy node (haproxy-1); at least 2 are required (the virtual IP needs a second node to move to)")


def test_no_placements_at_all_count_as_zero() -> None:
    resources = build_stack({})
    assert messages("etcd-min-members", resources).startswith("found 0 etcd members; at least 3")
    assert messages("postgres-min-nodes", resources).startswith("found 0 PostgreSQL nodes; at least 3")
    assert messages("haproxy-min-nodes", resources, {"minNodes": 3}).startswith("found 0 HAProxy nodes; at least 3")


def test_only_declared_services_count() -> None:
    resources = build_stack(healthy_files(etcd=2), target="ssh")
    # Another command, a day-2 step or a container named like a member under the etcd component is not one.
    etcd = next(r for r in resources if r.resource_type == "pgha:index:EtcdCluster")
    extra = StackBuilder(resources=resources)
    extra.add("command:remote:Command", "pgha-dev-etcd-etcd-3-service", {"create": "bash -s"}, etcd)
    extra.add("command:remote:Command", "pgha-dev-etcd-healthy", {"create": "bash -s"}, etcd)
    extra.add("docker:index/container:Container", "pgha-dev-etcd-etcd-4", {"hostname": "etcd-4"}, etcd)
    assert messages("etcd-min-members", resources).startswith("found 2 etcd members (etcd-1, etcd-2)")


def test_router_id_differing_within_a_pair_fails() -> None:
    files = healthy_files()
    files["haproxy-2"][KEEPALIVED] = keepalived_conf(vrid=52)
    text = messages("keepalived-router-id", build_stack(files))
    assert "vrrp_instance pgha_dev of pgha-dev-haproxy uses different virtual_router_id values" in text
    assert "haproxy-1=51, haproxy-2=52" in text


def test_router_id_shared_by_two_pairs_fails() -> None:
    resources = build_stack(healthy_files())
    b = StackBuilder(resources=resources)
    other = b.add("pgha:index:HAProxyGroup", "other-haproxy", {}, b.root)
    b.add("pgha:index:ServiceManifest", "other-haproxy-a-manifest",
          manifest("haproxy-3", {KEEPALIVED: keepalived_conf(instance="other")}, "docker"), other)
    assert messages("keepalived-router-id", resources) == (
        "virtual_router_id 51 is used by other-haproxy and pgha-dev-haproxy; keepalived clusters on one network "
        "segment need distinct ids, or they fight over each other's virtual IP")


def test_router_id_missing_fails_and_no_keepalived_passes() -> None:
    files = healthy_files()
    files["haproxy-1"][KEEPALIVED] = keepalived_conf(vrid=None)
    assert "vrrp_instance pgha_dev: virtual_router_id is missing" in messages("keepalived-router-id",
                                                                                build_stack(files))
    for node in ("haproxy-1", "haproxy-2"):
        del files[node][KEEPALIVED]
    assert violations("keepalived-router-id", build_stack(files)) == []


def test_two_services_on_one_address_and_port_conflict() -> None:
    # etcd-1 declared on pg-1's address and port: PostgreSQL listens on every address there.
    resources = build_stack(healthy_files(), listeners={"etcd-1": [("10.0.0.11", 2379, "etcd client")]})
    etcd1 = next(r for r in resources if r.name == "pgha-dev-etcd-etcd-1-manifest")
    etcd1.props["address"] = "10.0.0.21"  # type: ignore[index]
    etcd1.props["listeners"] = [{"address": "10.0.0.21", "port": 5432.0, "what": "etcd client"}]  # type: ignore[index]
    text = messages("no-port-conflicts", resources)
    assert text == ("port 5432 on 10.0.0.21 is claimed by etcd-1 (etcd client 10.0.0.21:5432) and by pg-1 (PostgreSQL "
                    "0.0.0.0:5432); only one listener gets it, the other service fails to start")


def test_listeners_of_one_service_on_one_port_conflict() -> None:
    sockets = [("10.0.0.31", 5000, "HAProxy stats"), ("0.0.0.0", 5000, "HAProxy read-write")]
    text = messages("no-port-conflicts", build_stack(healthy_files(), listeners={"haproxy-1": sockets}))
    assert "port 5000 on 10.0.0.31 is claimed by haproxy-1 (HAProxy stats 10.0.0.31:5000) and by haproxy-1 " \
           "(HAProxy read-write 0.0.0.0:5000)" in text


def test_published_ports_on_the_docker_host_conflict() -> None:
    same = [("127.0.0.1", 5000, "container port 5000")]
    resources = build_stack(healthy_files(), published={"haproxy-1": same, "haproxy-2": same})
    assert "port 5000 on the Docker host is claimed by haproxy-1 (published port 127.0.0.1:5000) and by " \
           "haproxy-2" in messages("no-port-conflicts", resources)
    distinct = {"haproxy-1": same, "haproxy-2": [("127.0.0.1", 5100, "container port 5000")]}
    assert violations("no-port-conflicts", build_stack(healthy_files(), published=distinct)) == []


def test_distinct_addresses_and_no_listeners_pass() -> None:
    files = {"pg-1": {PATRONI: None}, "etcd-1": {ETCD: None}, "pg-2": {}}
    assert violations("no-port-conflicts", build_stack(files)) == []
    assert violations("no-port-conflicts", build_stack(healthy_files(), listeners={"pg-1": []})) == []
