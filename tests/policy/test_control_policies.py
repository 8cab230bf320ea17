"""Patroni's REST API over TLS, HAProxy's verified checks and pinned SSH host keys, on hand-built stacks."""

from __future__ import annotations

import pytest
import yaml

from tests.policy.support import (
    ETCD,
    HAPROXY,
    PATRONI,
    StackBuilder,
    build_stack,
    haproxy_cfg,
    healthy_files,
    messages,
    patroni_yml,
    violations,
)

MEMBERS = ["pg-1", "pg-2", "pg-3"]


def with_restapi(**changes: object) -> list:
    data = yaml.safe_load(patroni_yml("pg-1", MEMBERS))
    data["restapi"] = {k: v for k, v in {**data["restapi"], **changes}.items() if v is not None}
    files = healthy_files()
    files["pg-1"][PATRONI] = yaml.safe_dump(data)
    return build_stack(files)


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_the_programs_shape_passes(target: str) -> None:
    resources = build_stack(healthy_files(), target=target)
    for name in ("patroni-rest-tls", "haproxy-check-tls", "etcd-tls"):
        assert violations(name, resources) == [], name


@pytest.mark.parametrize(("changes", "expected"), [
    ({"certfile": None}, "no certfile/keyfile: plain HTTP"),
    ({"verify_client": None}, "verify_client is None"),
    ({"verify_client": "none"}, "verify_client is 'none'"),
    ({"cafile": None}, "with cafile None"),
    ({"allowlist": None}, "no allowlist"),
    ({"authentication": None}, "no authentication"),
])
def test_a_rest_api_missing_a_protection_fails(changes: dict[str, object], expected: str) -> None:
    text = messages("patroni-rest-tls", with_restapi(**changes))
    assert text.startswith("pg-1: /etc/patroni/patroni.yml restapi: ") and expected in text, text


def test_required_client_certificates_pass_and_a_missing_section_fails() -> None:
    assert violations("patroni-rest-tls", with_restapi(verify_client="required")) == []
    data = yaml.safe_load(patroni_yml("pg-1", MEMBERS))
    del data["restapi"]
    files = healthy_files()
    files["pg-1"][PATRONI] = yaml.safe_dump(data)
    assert "has no restapi section" in messages("patroni-rest-tls", build_stack(files))


@pytest.mark.parametrize("edit", [
    lambda t: t.replace(" check-ssl", ""),
    lambda t: t.replace(" verify required", " verify none"),
    lambda t: t.replace(" ca-file /etc/haproxy/tls/ca.crt", ""),
])
def test_unverified_checks_fail(edit: object) -> None:
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = edit(haproxy_cfg("haproxy-1"))  # type: ignore[operator]
    text = messages("haproxy-check-tls", build_stack(files))
    assert ("haproxy-1: /etc/haproxy/haproxy.cfg listen postgres_read_write: the checks of pg-1, pg-2, pg-3 are not "
            "HTTPS verified") in text


def test_a_default_server_may_carry_the_check_tls() -> None:
    text = haproxy_cfg("haproxy-1").replace(" check-ssl verify required ca-file /etc/haproxy/tls/ca.crt", "")
    text = text.replace("    default-server inter 1s", "    default-server check-ssl verify required ca-file "
                                                     "/etc/haproxy/tls/ca.crt inter 1s")
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = text
    assert violations("haproxy-check-tls", build_stack(files)) == []


def remote(connection: object) -> list:
    b = StackBuilder()
    b.add("command:remote:Command", "pgha-prod-pg-1-patroni-install", {"create": "bash -s", "connection": connection},
          b.root)
    return b.resources


def test_a_remote_command_with_a_pinned_key_passes() -> None:
    pinned = {"host": "192.0.2.21", "hostKey": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHx"}
    assert violations("remote-command-host-key", remote(pinned)) == []


@pytest.mark.parametrize("connection", [{"host": "192.0.2.21"}, {"host": "192.0.2.21", "hostKey": ""}, None])
def test_a_remote_command_without_a_pinned_key_fails(connection: object) -> None:
    text = messages("remote-command-host-key", remote(connection))
    assert text.startswith("pgha-prod-pg-1-patroni-install: "), text
    assert ("has no hostKey" in text) if connection else ("no connection" in text)


def with_etcd(member: str, **changes: object) -> list:
    files = healthy_files()
    data = yaml.safe_load(files[member][ETCD] or "")
    for key, value in changes.items():
        section, _, field = key.partition("__")
        if field:
            data[section] = {k: v for k, v in {**data[section], field.replace("_", "-"): value}.items()
                             if v is not None}
        else:
            data[section.replace("_", "-")] = value
    files[member][ETCD] = yaml.safe_dump(data)
    return build_stack(files)


@pytest.mark.parametrize(("changes", "expected"), [
    ({"listen_client_urls": "http://10.0.0.11:2379,https://127.0.0.1:2379"},
     "listen-client-urls http://10.0.0.11:2379 is not https"),
    ({"listen_peer_urls": "http://10.0.0.11:2380"}, "listen-peer-urls http://10.0.0.11:2380 is not https"),
    ({"advertise_client_urls": "http://10.0.0.11:2379"}, "advertise-client-urls http://10.0.0.11:2379 is not https"),
    ({"client-transport-security__client_cert_auth": False}, "client-transport-security does not require"),
    ({"peer-transport-security__trusted_ca_file": None}, "peer-transport-security does not require"),
    ({"client-transport-security__cert_file": None}, "client-transport-security has no cert-file/key-file"),
    ({"peer_transport_security": None}, "peer-transport-security has no cert-file/key-file"),
])
def test_an_etcd_member_missing_a_protection_fails(changes: dict[str, object], expected: str) -> None:
    text = messages("etcd-tls", with_etcd("etcd-2", **changes))
    assert text.startswith("etcd-2: /etc/pgha/etcd.yml: ") and expected in text, text


@pytest.mark.parametrize(("changes", "expected"), [
    ({"protocol": None}, "protocol None with cacert"),
    ({"protocol": "http"}, "protocol 'http'"),
    ({"cacert": None}, "etcd is not verified over TLS"),
    ({"cert": None}, "no client certificate"),
    ({"password": None}, "no username/password"),
])
def test_a_patroni_reaching_etcd_without_a_protection_fails(changes: dict[str, object], expected: str) -> None:
    data = yaml.safe_load(patroni_yml("pg-3", MEMBERS))
    data["etcd3"] = {k: v for k, v in {**data["etcd3"], **changes}.items() if v is not None}
    files = healthy_files()
    files["pg-3"][PATRONI] = yaml.safe_dump(data)
    text = messages("etcd-tls", build_stack(files))
    assert text.startswith("pg-3: /etc/patroni/patroni.yml etcd3: ") and expected in text, text
