"""The host firewall: every ssh-target host carries pgha's nftables table, its ports open to who needs them."""

from __future__ import annotations

from tests.policy.support import (
    ADDRESSES,
    FIREWALL,
    UNKNOWN,
    build_stack,
    default_listeners,
    healthy_files,
    messages,
    violations,
)

POLICY = "host-firewall"
CLUSTER = ", ".join(ADDRESSES.values())


def ruleset(label: str, *, drop: bool = True, established: bool = True, skip: int | None = None,
            everywhere: int | None = None) -> str:
    """pgha's ruleset for `label`, in the shape render/firewall.py writes: each listener's port from the cluster's
    addresses (HAProxy's client ports from everywhere), `skip` left out, `everywhere` open to all."""
    lines = ["table inet pgha", "delete table inet pgha", "table inet pgha {", "\tchain input {",
             f"\t\ttype filter hook input priority filter; policy {'drop' if drop else 'accept'};",
             '\t\tiif "lo" accept']
    lines += ["\t\tct state established,related accept"] if established else []
    lines.append("\t\tmeta nfproto ipv4 tcp dport 22 accept")
    for address, port, what in default_listeners(label):
        if address == "127.0.0.1" or port == skip:
            continue
        public = port == everywhere or what.startswith("HAProxy read")
        match = "meta nfproto ipv4" if public else f"ip saddr {{ {CLUSTER} }}"
        lines.append(f'\t\t{match} tcp dport {port} accept comment "{what}"')
    return "\n".join([*lines, "\t}", "}"]) + "\n"


def guarded(**changes: str | None) -> dict[str, dict[str, str | None]]:
    files = healthy_files()
    for label in files:
        files[label][FIREWALL] = changes.get(label, ruleset(label))
    return files


def test_hosts_that_carry_the_firewall_pass() -> None:
    assert violations(POLICY, build_stack(guarded(), target="ssh")) == []


def test_a_host_without_the_firewall_fails() -> None:
    files = guarded()
    del files["pg-2"][FIREWALL]
    assert messages(POLICY, build_stack(files, target="ssh")) == (
        "pg-2: its host carries no pgha firewall (an nftables ruleset); every port of the host is open to every "
        "address that routes to it: set pgha:firewall.enabled: true")


def test_a_ruleset_that_lets_everything_in_or_cuts_the_deployment_fails() -> None:
    text = messages(POLICY, build_stack(guarded(**{"etcd-1": ruleset("etcd-1", drop=False)}), target="ssh"))
    assert text == ("etcd-1: /etc/pgha/firewall.nft has no input chain of table inet pgha with `policy drop`: what no "
                    "rule accepts gets in")
    text = messages(POLICY, build_stack(guarded(**{"etcd-1": ruleset("etcd-1", established=False)}), target="ssh"))
    assert "does not accept established connections: loading it would cut the deployment's own" in text


def test_a_port_the_service_listens_on_must_be_accepted() -> None:
    text = messages(POLICY, build_stack(guarded(**{"pg-1": ruleset("pg-1", skip=8008)}), target="ssh"))
    assert text == ("pg-1: /etc/pgha/firewall.nft accepts no connection to Patroni REST API (port 8008): the "
                    "cluster's own hosts could not reach it")


def test_only_haproxy_client_ports_may_be_open_to_every_address() -> None:
    text = messages(POLICY, build_stack(guarded(**{"etcd-2": ruleset("etcd-2", everywhere=2379)}), target="ssh"))
    assert text == ("etcd-2: /etc/pgha/firewall.nft opens etcd client (port 2379) to every address; only the hosts "
                    "that need it (and pgha:firewall.admin_from) should reach it")
    haproxy = ruleset("haproxy-1", everywhere=7000)
    assert "HAProxy stats (port 7000) to every address" in messages(
        POLICY, build_stack(guarded(**{"haproxy-1": haproxy}), target="ssh"))


def test_what_is_not_known_or_not_a_host_is_not_judged() -> None:
    # Containers (docker target) carry no host firewall.
    assert violations(POLICY, build_stack(healthy_files(), target="docker")) == []
    # A first preview: the ruleset's content is not known yet; the manifest's files not known at all.
    assert violations(POLICY, build_stack(guarded(**{"pg-1": None}), target="ssh")) == []
    resources = build_stack(guarded(), target="ssh")
    for resource in resources:
        if resource.resource_type == "pgha:index:ServiceManifest":
            resource.props["files"] = UNKNOWN  # type: ignore[index]
    assert violations(POLICY, resources) == []
    # A manifest that does not say which target placed it (an older program's) is not judged either.
    files = guarded()
    del files["pg-3"][FIREWALL]
    resources = build_stack(files, target="ssh")
    for resource in resources:
        if resource.resource_type == "pgha:index:ServiceManifest":
            resource.props["target"] = None  # type: ignore[index]  # (the engine's proxy deletes nothing)
    assert violations(POLICY, resources) == []
