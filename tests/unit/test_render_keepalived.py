"""Tests for render.keepalived: golden files, unicast peers, priorities and the VRRP secret."""

from __future__ import annotations

import dataclasses
import re

import pytest

from config import parse
from render.keepalived import render_keepalived
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load, variant_raw


def _block(text: str, name: str) -> list[str]:
    body = re.search(rf"\n\s*{name} {{\n(.*?)\n\s*}}", text, re.S)
    assert body, f"no {name} block"
    return [line.strip() for line in body.group(1).splitlines()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for node in cfg.haproxy.nodes:
        assert_golden(f"{variant}/keepalived-{node.name}.conf", render_keepalived(cfg, node, FAKE_CREDS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_unicast_peers_are_the_other_nodes(variant: str) -> None:
    cfg = load(variant)
    for node in cfg.haproxy.nodes:
        text = render_keepalived(cfg, node, FAKE_CREDS)
        assert f"    unicast_src_ip {node.address}\n" in text
        assert "    check_unicast_src\n" in text  # adverts from anyone but the peers are dropped
        peers = _block(text, "unicast_peer")
        assert peers == [str(n.address) for n in cfg.haproxy.nodes if n != node]
        assert str(node.address) not in peers


@pytest.mark.parametrize("variant", VARIANTS)
def test_instance_settings(variant: str) -> None:
    cfg = load(variant)
    priorities = []
    for node in cfg.haproxy.nodes:
        text = render_keepalived(cfg, node, FAKE_CREDS)
        assert "    state BACKUP\n" in text
        assert f"    interface {cfg.haproxy.interface}\n" in text
        assert f"    virtual_router_id {cfg.virtual_router_id}\n" in text
        assert "    advert_int 1\n" in text
        assert _block(text, "virtual_ipaddress") == [f"{cfg.haproxy.virtual_ip}/32 dev {cfg.haproxy.interface}"]
        assert _block(text, "track_script") == ["chk_haproxy"]
        assert 'script "/usr/local/bin/pgha-haproxy-ready"' in _block(text, "vrrp_script chk_haproxy")
        assert _block(text, "authentication") == ["auth_type PASS", f"auth_pass {FAKE_CREDS.keepalived[:8]}"]
        priorities.append(int(re.search(r"\n    priority (\d+)\n", text).group(1)))  # type: ignore[union-attr]
    assert priorities == sorted(priorities, reverse=True)
    assert len(set(priorities)) == len(priorities)
    assert all(1 <= p <= 254 for p in priorities)


def test_no_virtual_ip_is_an_error() -> None:
    raw = variant_raw("dev")
    del raw["haproxy"]["virtual_ip"]
    cfg = parse(raw)
    with pytest.raises(ValueError, match="virtual_ip"):
        render_keepalived(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)


@pytest.mark.parametrize("secret", ["ab cdefgh", "abc#defg", "a'bcdefg", 'a"bcdefg', "a!bcdefg", "a{bcdefg", ""])
def test_a_secret_keepalived_cannot_read_is_an_error(secret: str) -> None:
    cfg = load("dev")
    creds = dataclasses.replace(FAKE_CREDS, keepalived=secret)
    with pytest.raises(ValueError, match=r"credentials\.keepalived"):
        render_keepalived(cfg, cfg.haproxy.nodes[0], creds)


def test_a_non_member_is_refused() -> None:
    cfg = load("dev")
    with pytest.raises(ValueError, match=r"not one of haproxy\.nodes"):
        render_keepalived(cfg, cfg.postgres.nodes[0], FAKE_CREDS)
