"""Tests for render.firewall: golden files, and who may connect to each port of each host."""

from __future__ import annotations

import copy
from ipaddress import IPv4Address
from typing import Any

import pytest

from catalog.roles import ROLES
from config import parse
from render.firewall import ACCESS, render_firewall, render_firewall_unit
from tests.golden_util import assert_golden, load, variant_raw


def prod(**changes: Any) -> Any:
    raw = copy.deepcopy(variant_raw("prod"))
    for key, value in changes.items():
        raw[key] = {**raw.get(key, {}), **value}
    return parse(raw)


def rules(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if (" accept" in line and "dport" in line) or "protocol" in line]


def rule_for(text: str, port: int) -> str:
    found = [line for line in rules(text) if f"dport {port} " in line]
    assert len(found) == 1, found
    return found[0]


def test_golden() -> None:
    cfg = load("prod")
    for host in cfg.all_hosts():
        assert_golden(f"prod/firewall-{host.name}.nft", render_firewall(cfg, host.address))
    assert_golden("prod/pgha-firewall.service", render_firewall_unit())


def test_every_port_of_the_role_table_says_who_may_connect() -> None:
    assert set(ACCESS) == {field for role in ROLES.values() for field in role.ports}


def test_a_port_without_a_rule_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = load("prod")
    monkeypatch.delitem(ACCESS, "etcd.peer_port")
    with pytest.raises(ValueError, match=r"firewall: no rule says who may connect to etcd.peer_port"):
        render_firewall(cfg, cfg.etcd.members[0].address)


def test_each_role_opens_its_ports_to_the_hosts_that_need_them() -> None:
    cfg = load("prod")
    etcd, pg, hap = (render_firewall(cfg, hosts[0].address) for hosts in cfg.roles().values())
    pgs, haps = "192.0.2.21, 192.0.2.22, 192.0.2.23", "192.0.2.31, 192.0.2.32"
    etcds = "192.0.2.11, 192.0.2.12, 192.0.2.13"
    assert rule_for(pg, 5432).startswith(f"ip saddr {{ {pgs}, {haps}, 198.51.100.0/24 }} tcp dport 5432 accept")
    assert rule_for(pg, 8008).startswith(f"ip saddr {{ {pgs}, {haps}, 203.0.113.10 }} tcp dport 8008 accept")
    assert rule_for(etcd, 2379).startswith(f"ip saddr {{ {etcds}, {pgs} }} tcp dport 2379 accept")
    assert rule_for(etcd, 2380).startswith(f"ip saddr {{ {etcds} }} tcp dport 2380 accept")
    # HAProxy's client ports: the applications' networks (client_cidrs) and the cluster's own hosts and VIP.
    assert rule_for(hap, 5000).startswith(f"ip saddr {{ {etcds}, {pgs}, 192.0.2.30, {haps}, 198.51.100.0/24 }} tcp "
                                          "dport 5000 accept")
    assert rule_for(hap, 7000).startswith(
        f"ip saddr {{ {etcds}, {pgs}, 192.0.2.30, {haps}, 203.0.113.10 }} tcp dport 7000")
    assert f"ip saddr {{ {haps} }} ip protocol 112 accept" in hap
    # Nothing of another role: a PostgreSQL host opens no etcd or HAProxy port, no VRRP.
    assert [p for p in (2379, 2380, 5000, 5001, 7000) if f"dport {p} " in pg] == [] and "protocol 112" not in pg
    for text in (pg, etcd, hap):
        assert "policy drop;" in text and 'iif "lo" accept' in text and "ct state established,related accept" in text
        assert rule_for(text, 22).startswith("ip saddr 203.0.113.0/24 tcp dport 22 accept")
        assert text.index("table inet pgha\ndelete table inet pgha\ntable inet pgha {") > 0
        assert "flush ruleset" not in text


def test_a_host_with_several_roles_opens_the_union_of_their_ports() -> None:
    raw = copy.deepcopy(variant_raw("prod"))
    raw["etcd"]["members"][0]["address"] = "192.0.2.31"  # etcd-1 on haproxy-1's host
    cfg = parse(raw)
    text = render_firewall(cfg, IPv4Address("192.0.2.31"))
    assert "Host 192.0.2.31: etcd.members, haproxy.nodes." in text
    ports = [22, 2379, 2380, 5000, 5001, 7000]
    assert [p for p in ports if f"dport {p} " in text] == ports
    assert "192.0.2.11" not in text, "the address moved: no rule names the old one"


def test_settings_widen_only_what_they_name() -> None:
    cfg = prod(firewall={"ssh_from": ["0.0.0.0/0", "::/0"], "ssh_ports": [22, 2222],
                         "allow": [{"port": 9100, "sources": ["10.9.0.5/32", "2001:db8::/32"]},
                                   {"port": 161, "protocol": "udp", "sources": ["10.9.0.0/24"]}]})
    text = render_firewall(cfg, cfg.haproxy.nodes[0].address)
    assert "meta nfproto ipv4 tcp dport 22 accept" in text and "meta nfproto ipv6 tcp dport 22 accept" in text
    assert "meta nfproto ipv4 tcp dport 2222 accept" in text
    assert "198.51.100.0/24" in rule_for(text, 5000), "direct clients (client_cidrs) reach HAProxy too"
    assert 'ip saddr 10.9.0.5 tcp dport 9100 accept comment "firewall.allow[0]"' in text
    assert 'ip6 saddr 2001:db8::/32 tcp dport 9100 accept comment "firewall.allow[0]"' in text
    assert 'ip saddr 10.9.0.0/24 udp dport 161 accept comment "firewall.allow[1]"' in text


def test_overlapping_sources_are_listed_once() -> None:
    cfg = prod(postgres={"client_cidrs": ["192.0.2.0/24"]})
    assert rule_for(render_firewall(cfg, cfg.postgres.nodes[0].address), 5432).startswith(
        "ip saddr 192.0.2.0/24 tcp dport 5432")


def test_rendered_only_for_a_host_of_an_ssh_stack_with_the_firewall() -> None:
    with pytest.raises(ValueError, match=r"only for the ssh target .*\(target: docker\)"):
        render_firewall(load("dev"), IPv4Address("10.89.0.21"))
    with pytest.raises(ValueError, match=r"only for the ssh target with firewall.enabled"):
        render_firewall(prod(firewall={"enabled": False}), IPv4Address("192.0.2.21"))
    with pytest.raises(ValueError, match=r"firewall: 192.0.2.99 is no host of this stack"):
        render_firewall(load("prod"), IPv4Address("192.0.2.99"))


def test_the_unit_loads_the_table_before_the_network_and_after_the_admins_rules() -> None:
    unit = render_firewall_unit()
    assert "Before=network-pre.target" in unit and "After=nftables.service" in unit
    assert "ExecStart=/usr/sbin/nft -f /etc/pgha/firewall.nft" in unit and "WantedBy=sysinit.target" in unit
