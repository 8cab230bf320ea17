"""The local engine's providers without Docker or hosts: generated values, wire helpers, diffs on states."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography import x509

from local_engine.providers.docker_container import Container
from local_engine.providers.docker_objects import Network, Volume
from local_engine.providers.random import RandomId, random_text
from local_engine.providers.tls import (
    LocallySignedCert,
    cert_request,
    locally_signed_cert,
    private_key,
    self_signed_cert,
)
from local_engine.stack_file import stack_config
from local_engine.state import ResourceState
from local_engine.wire import (
    UnsupportedInputError,
    annotate_secrets,
    duration_ns,
    go_duration,
    is_secret,
    make_secret,
    unwrap,
)


def state(type_: str, inputs: dict, outputs: dict | None = None) -> ResourceState:
    return ResourceState("urn:pulumi:t::t::x::r", type_, "r", True, "id", "", inputs, outputs or dict(inputs))


def test_password_rules() -> None:
    text = random_text({"length": 40.0, "overrideSpecial": "#", "minSpecial": 3.0, "minNumeric": 5.0}, "t")
    assert len(text) == 40 and text.count("#") >= 3 and sum(c.isdigit() for c in text) >= 5
    assert set(text) <= set("#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    plain = random_text({"length": 64.0, "special": False, "upper": False}, "t")
    assert set(plain) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert len({random_text({"length": 16.0}, "t") for _ in range(20)}) == 20
    with pytest.raises(UnsupportedInputError, match="min_"):
        random_text({"length": 2.0, "minUpper": 3.0}, "t")


def test_random_id_encodings_agree(tmp_path: Path) -> None:
    resource_id, outputs = RandomId().create(None, "t", {"byteLength": 8.0})  # type: ignore[arg-type]
    raw = bytes.fromhex(outputs["hex"])
    assert len(raw) == 8 and resource_id == outputs["b64Url"]
    assert base64.urlsafe_b64decode(outputs["b64Url"] + "=" * (-len(outputs["b64Url"]) % 4)) == raw
    assert base64.b64decode(outputs["b64Std"]) == raw and int(outputs["dec"]) == int.from_bytes(raw, "big")
    _, prefixed = RandomId().create(None, "t", {"byteLength": 4.0, "prefix": "p-"})  # type: ignore[arg-type]
    assert all(prefixed[key].startswith("p-") for key in ("hex", "dec", "b64Url", "b64Std"))
    with pytest.raises(UnsupportedInputError, match="colour"):
        RandomId().check("t", {"byteLength": 4.0, "colour": "red"})


@pytest.mark.parametrize(("text", "ns"), [("5s", 5 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8),
                                          ("1.5s", 15 * 10**8), ("0s", 0), ("", 0), (None, 0)])
def test_durations(text: str | None, ns: int) -> None:
    assert duration_ns(text, "t") == ns


@pytest.mark.parametrize("text", ["5", "abc", "5x", "s", 5.0])
def test_bad_durations_raise(text: object) -> None:
    with pytest.raises(UnsupportedInputError):
        duration_ns(text, "t")


@pytest.mark.parametrize(("ns", "text"), [(0, "0s"), (5 * 10**8, "500ms"), (2 * 10**9, "2s"), (120 * 10**9, "2m0s"),
                                          (90 * 10**9, "1m30s"), (3600 * 10**9, "1h0m0s"), (1_500_000, "1.5ms")])
def test_go_canonical_durations(ns: int, text: str) -> None:
    assert go_duration(ns) == text


def test_secret_wrapping_and_annotation() -> None:
    wrapped = {"a": make_secret([make_secret("x"), 1.0])}
    assert unwrap(wrapped) == {"a": ["x", 1.0]}
    assert is_secret(make_secret(make_secret("y"))) and make_secret(make_secret("y"))["value"] == "y"
    outputs = annotate_secrets({"uploads": [{"content": "a"}, {"content": "b"}], "name": "n", "stdout": "s",
                                "conn": {"host": "h", "key": "k"}},
                               {"uploads": [{"content": "a"}, {"content": make_secret("b")}], "name": "n",
                                "conn": {"host": "h", "key": make_secret("k")}}, ["stdout"])
    assert is_secret(outputs["uploads"]) and not is_secret(outputs["name"]) and is_secret(outputs["stdout"])
    assert not is_secret(outputs["conn"]) and is_secret(outputs["conn"]["key"]) and outputs["conn"]["host"] == "h"


def test_stack_config(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text("config:\n  pgha:name: x\n  pgha:etcd: {members: [{name: a}]}\n  debug: true\n"
                     "  pgha:sshPrivateKey: {secure: AAEAAQ==}\n")
    with pytest.raises(ValueError, match="pgha:sshPrivateKey cannot be decrypted"):
        stack_config(stack, project="pgha")
    config, secure = stack_config(stack, {"pgha:sshPrivateKey": "KEY", "pgha:name": "y"}, project="pgha")
    assert config == {"pgha:name": "y", "pgha:etcd": '{"members": [{"name": "a"}]}', "pgha:debug": "true",
                      "pgha:sshPrivateKey": "KEY"}
    assert secure == {"pgha:sshPrivateKey"}


def test_certificates_chain_to_their_ca() -> None:
    ca_key = unwrap(private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "ca-key"))
    ca = self_signed_cert({"privateKeyPem": ca_key["privateKeyPem"], "subject": {"commonName": "test CA"},
                           "isCaCertificate": True, "validityPeriodHours": 24,
                           "allowedUses": ["cert_signing", "crl_signing"]}, "ca")
    key = unwrap(private_key({"algorithm": "ECDSA", "ecdsaCurve": "P256"}, "key"))
    request = cert_request({"privateKeyPem": key["privateKeyPem"], "subject": {"commonName": "pg-1"},
                            "dnsNames": ["pg-1"], "ipAddresses": ["10.0.0.1", "127.0.0.1"]}, "request")
    signed = locally_signed_cert({"certRequestPem": request["certRequestPem"],
                                  "caPrivateKeyPem": ca_key["privateKeyPem"], "caCertPem": ca["certPem"],
                                  "validityPeriodHours": 24,
                                  "allowedUses": ["digital_signature", "server_auth"]}, "cert")
    ca_cert, cert = (x509.load_pem_x509_certificate(c["certPem"].encode()) for c in (ca, signed))
    cert.verify_directly_issued_by(ca_cert)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(a) for a in sans.get_values_for_type(x509.IPAddress)] == ["10.0.0.1", "127.0.0.1"]
    assert sans.get_values_for_type(x509.DNSName) == ["pg-1"]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert ca_cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True
    with pytest.raises(UnsupportedInputError, match="ecdsaCurve: 'P999'"):
        private_key({"algorithm": "ECDSA", "ecdsaCurve": "P999"}, "bad")


def test_a_certificate_within_its_early_renewal_window_is_replaced() -> None:
    inputs = {"certRequestPem": "r", "caPrivateKeyPem": "k", "caCertPem": "c", "validityPeriodHours": 48.0,
              "earlyRenewalHours": 24.0}
    fresh = state(LocallySignedCert.type, inputs, {**inputs, "validityEndTime": "2099-01-01T00:00:00Z"})
    assert LocallySignedCert().diff(fresh, dict(inputs)).replace == ()
    due = state(LocallySignedCert.type, inputs, {**inputs, "validityEndTime": "2000-01-01T00:00:00Z"})
    assert LocallySignedCert().diff(due, dict(inputs)).replace == ("readyForRenewal",)


def test_container_diff_follows_the_schema() -> None:
    inputs = {"image": "i", "name": "c", "restart": "no", "uploads": [{"file": "/f", "content": "a"}],
              "healthcheck": {"tests": ["CMD", "true"], "interval": "2s", "startPeriod": "2m0s", "retries": 3.0},
              "ports": [{"internal": 80.0, "ip": "127.0.0.1"}]}
    old = state(Container.type, inputs, {**inputs, "ports": [{"internal": 80, "protocol": "tcp", "external": 32768,
                                                              "ip": "127.0.0.1"}]})
    assert Container().diff(old, dict(inputs)).changed == (), "defaults and read-back ports are no change"
    update = Container().diff(old, {**inputs, "restart": "always"})
    assert update.changed == ("restart",) and update.replace == () and update.notes == ()
    health = Container().diff(old, {**inputs, "healthcheck": {**inputs["healthcheck"], "startPeriod": "120s"}})
    assert health.changed == ("healthcheck",) and health.replace == () and "state only" in health.notes[0]
    replace = Container().diff(old, {**inputs, "uploads": [{"file": "/f", "content": "b"}]})
    assert replace.replace == ("uploads",) and replace.delete_before_replace


def test_network_and_volume_diffs_replace_delete_before_replace_when_named() -> None:
    inputs = {"name": "n", "ipamConfigs": [{"subnet": "10.1.0.0/24"}]}
    reported = state(Network.type, inputs, {**inputs, "ipamConfigs": [{"subnet": "10.1.0.0/24",
                                                                       "gateway": "10.1.0.1"}]})
    diff = Network().diff(reported, dict(inputs))
    assert diff.replace == ("ipamConfigs",) and diff.delete_before_replace, "a gateway the state holds replaces"
    explicit = {"name": "n", "ipamConfigs": [{"subnet": "10.1.0.0/24", "gateway": "10.1.0.1"}]}
    assert Network().diff(state(Network.type, explicit), dict(explicit)).changed == ()
    volume = state(Volume.type, {"name": "v"})
    assert Volume().diff(volume, {"name": "v", "driver": "other"}).replace == ("driver",)
