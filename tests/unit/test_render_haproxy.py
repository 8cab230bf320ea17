"""Tests for render.haproxy: golden files, check timing, listeners and the stats password."""

from __future__ import annotations

import re

import pytest

from render.haproxy import client_sources, haproxy_word, render_haproxy
from render.paths import HAPROXY_TLS_CA, HAPROXY_TLS_CLIENT
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load


def _listener(text: str, name: str) -> list[str]:
    block = text.split(f"\nlisten {name}\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip() for line in block.splitlines()]


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for node in cfg.haproxy.nodes:
        assert_golden(f"{variant}/haproxy-{node.name}.cfg", render_haproxy(cfg, node, FAKE_CREDS))


@pytest.mark.parametrize("variant", VARIANTS)
def test_listeners_route_by_patroni_role(variant: str) -> None:
    cfg = load(variant)
    text = render_haproxy(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)
    check = cfg.haproxy.check
    timing = (
        f"default-server inter {check.inter_ms}ms fastinter {check.fastinter_ms}ms "
        f"downinter {check.downinter_ms}ms fall {check.fall} rise {check.rise} "
        "on-marked-down shutdown-sessions"
    )
    servers = [
        f"server {n.name} {n.address}:{cfg.postgres.port} check port {cfg.patroni.rest_api_port} check-ssl verify "
        f"required ca-file {HAPROXY_TLS_CA} crt {HAPROXY_TLS_CLIENT} verifyhost {n.name}"
        for n in cfg.postgres.nodes
    ]
    rw = _listener(text, "postgres_read_write")
    assert f"bind *:{cfg.haproxy.read_write_port}" in rw
    assert "http-check send meth GET uri /primary" in rw
    assert "http-check expect status 200" in rw
    assert timing in rw
    assert [line for line in rw if line.startswith("server ")] == servers
    ro = _listener(text, "postgres_read_only")
    assert f"bind *:{cfg.haproxy.read_only_port}" in ro
    assert "balance roundrobin" in ro
    assert f"http-check send meth GET uri /replica?lag={cfg.haproxy.max_replica_lag_bytes}" in ro
    assert timing in ro
    assert [line for line in ro if line.startswith("server ")] == servers


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_refused_connection_is_not_held_on_the_same_server(variant: str) -> None:
    """HAProxy waits a turn-around of min(timeout connect, 1 s) before each retry on the same server, and on
    every retry while one server is up: on the read-write port, 2 retries added 2 s to a switchover whenever
    a client connected while the old leader's postmaster was down (seen as `SC ... /2` in its log)."""
    text = render_haproxy(load(variant), load(variant).haproxy.nodes[0], FAKE_CREDS)
    defaults = text.split("\ndefaults\n", 1)[1].split("\n\n", 1)[0]
    assert "retries" not in defaults
    rw, ro = _listener(text, "postgres_read_write"), _listener(text, "postgres_read_only")
    assert "retries 0" in rw and not any(line.startswith("option redispatch") for line in rw)
    assert "retries 1" in ro and "option redispatch 1" in ro


@pytest.mark.parametrize("variant", VARIANTS)
def test_timeouts(variant: str) -> None:
    cfg = load(variant)
    text = render_haproxy(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)
    assert f"    timeout client {cfg.haproxy.client_timeout_s}s\n" in text
    assert f"    timeout server {cfg.haproxy.server_timeout_s}s\n" in text
    assert "    timeout connect 4s\n" in text
    assert "    timeout check 2s\n" in text


def test_stats_page_is_private_and_authenticated() -> None:
    cfg = load("dev")
    for node in cfg.haproxy.nodes:
        stats = _listener(render_haproxy(cfg, node, FAKE_CREDS), "stats")
        assert f"bind {node.address}:{cfg.haproxy.stats_port}" in stats
        assert "mode http" in stats
        auth = [line for line in stats if line.startswith("stats auth ")]
        assert auth == [f"stats auth {haproxy_word('stats:' + FAKE_CREDS.stats)}"]


def _unescape(word: str) -> str:
    assert not re.search(r"(?<!\\)[\s#'\"]", word.replace("\\\\", "")), word
    return re.sub(r"\\(.)", r"\1", word)


def test_haproxy_word_escapes_every_special_character() -> None:
    for text in (FAKE_CREDS.stats, "a b", "#", "'\"", "\\", "plain"):
        assert _unescape(haproxy_word(text)) == text
    with pytest.raises(ValueError, match="line breaks"):
        haproxy_word("a\nb")


def test_a_non_member_is_refused() -> None:
    cfg = load("dev")
    with pytest.raises(ValueError, match=r"not one of haproxy\.nodes"):
        render_haproxy(cfg, cfg.postgres.nodes[0], FAKE_CREDS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_listener_accepts_only_clients_and_the_clusters_hosts(variant: str) -> None:
    cfg = load(variant)
    sources = client_sources(cfg)
    hosts = {f"{h.address}/32" for h in cfg.all_hosts()}
    gateway = {f"{cfg.docker_settings.subnet.network_address + 1}/32"} if cfg.target == "docker" else set()
    assert set(sources) == hosts | gateway | {str(c) for c in cfg.postgres.client_cidrs}
    text = render_haproxy(cfg, cfg.haproxy.nodes[0], FAKE_CREDS)
    for name in ("stats", "postgres_read_write", "postgres_read_only"):
        lines = [line.strip() for line in _listener(text, name)]
        assert f"acl pgha_clients src {' '.join(sources)}" in lines, name
        assert "tcp-request connection reject if !pgha_clients" in lines, name
