"""Harness self-tests that need no Docker engine: randomness rules, parsing, config, dispatch."""

from __future__ import annotations

import base64
from pathlib import Path

import pulumi
import pulumi_random as prandom
import pytest
from cryptography import x509
from pulumi.runtime import MockCallArgs, MockResourceArgs, settings
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from . import HarnessError, RealMocks, UnsupportedInputError, stack_config
from .certs import cert_request, locally_signed_cert, private_key, self_signed_cert
from .randoms import random_id, random_text
from .values import duration_ns, is_secret, make_secret, unwrap


def test_password_rules() -> None:
    text = random_text({"length": 40.0, "overrideSpecial": "#", "minSpecial": 3.0, "minNumeric": 5.0}, "t")
    assert len(text) == 40 and text.count("#") >= 3 and sum(c.isdigit() for c in text) >= 5
    assert set(text) <= set("#0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
    plain = random_text({"length": 64.0, "special": False, "upper": False}, "t")
    assert set(plain) <= set("0123456789abcdefghijklmnopqrstuvwxyz")
    assert len({random_text({"length": 16.0}, "t") for _ in range(20)}) == 20
    with pytest.raises(UnsupportedInputError, match="min_"):
        random_text({"length": 2.0, "minUpper": 3.0}, "t")
    with pytest.raises(UnsupportedInputError, match="colour"):
        random_text({"length": 8.0, "colour": "red"}, "t")


def test_random_id_encodings_agree() -> None:
    resource_id, state = random_id({"byteLength": 8.0}, "t")
    raw = bytes.fromhex(state["hex"])
    assert len(raw) == 8 and resource_id == state["b64Url"]
    assert base64.urlsafe_b64decode(state["b64Url"] + "=" * (-len(state["b64Url"]) % 4)) == raw
    assert base64.b64decode(state["b64Std"]) == raw and int(state["dec"]) == int.from_bytes(raw, "big")
    _, prefixed = random_id({"byteLength": 4.0, "prefix": "p-"}, "t")
    assert all(prefixed[key].startswith("p-") for key in ("hex", "dec", "b64Url", "b64Std"))


@pytest.mark.parametrize(("text", "ns"), [("5s", 5 * 10**9), ("1m30s", 90 * 10**9), ("500ms", 5 * 10**8),
                                          ("1.5s", 15 * 10**8), ("0s", 0), ("", 0), (None, 0)])
def test_durations(text: str | None, ns: int) -> None:
    assert duration_ns(text, "t") == ns


@pytest.mark.parametrize("text", ["5", "abc", "5x", "s", 5.0])
def test_bad_durations_raise(text: object) -> None:
    with pytest.raises(UnsupportedInputError):
        duration_ns(text, "t")


def test_secret_wrapping() -> None:
    wrapped = {"a": make_secret([make_secret("x"), 1.0])}
    assert unwrap(wrapped) == {"a": ["x", 1.0]}
    assert is_secret(make_secret(make_secret("y"))) and make_secret(make_secret("y"))["value"] == "y"


def test_stack_config(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text("config:\n  pgha:name: x\n  pgha:etcd: {members: [{name: a}]}\n  debug: true\n"
                     "  pgha:sshPrivateKey: {secure: AAEAAQ==}\n")
    with pytest.raises(ValueError, match="pgha:sshPrivateKey cannot be decrypted"):
        stack_config(stack)
    config, secure = stack_config(stack, {"pgha:sshPrivateKey": "KEY", "pgha:name": "y"})
    assert config == {"pgha:name": "y", "pgha:etcd": '{"members": [{"name": "a"}]}', "pgha:debug": "true",
                      "pgha:sshPrivateKey": "KEY"}
    assert secure == {"pgha:sshPrivateKey"}


def test_dispatch_refuses_unknown_things(tmp_path: Path) -> None:
    mocks = RealMocks(workdir=tmp_path)
    assert mocks.new_resource(MockResourceArgs("pgha:index:Cluster", "c", {}, custom=False)) == ("", {})
    with pytest.raises(HarnessError, match=r"aws:s3/bucket:Bucket.*'b'"):
        mocks.new_resource(MockResourceArgs("aws:s3/bucket:Bucket", "b", {}, custom=True))
    with pytest.raises(HarnessError, match="host"):
        mocks.new_resource(MockResourceArgs("pulumi:providers:docker", "p", {"host": "ssh://x"}, custom=True))
    with pytest.raises(HarnessError, match="importing"):
        mocks.new_resource(MockResourceArgs("docker:index/network:Network", "n", {}, custom=True, resource_id="x"))
    with pytest.raises(HarnessError, match="docker:index/getNetwork"):
        mocks.call(MockCallArgs("docker:index/getNetwork:getNetwork", {}, ""))
    assert [r.name for r in mocks.created] == []


def test_password_result_is_secret_through_the_sdk(tmp_path: Path) -> None:
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(RealMocks(workdir=tmp_path), project="t", stack="t", preview=False)
    password = prandom.RandomPassword("pw", length=20)
    text = prandom.RandomString("s", length=12, special=False)

    async def check() -> tuple[str | None, bool, str | None, bool]:
        return (await password.result.future(), await password.result.is_secret(),
                await text.result.future(), await text.result.is_secret())

    _sync_await(run_pulumi_func(lambda: None))
    value, secret, plain, plain_secret = _sync_await(check())
    assert value is not None and len(value) == 20 and secret
    assert plain is not None and len(plain) == 12 and not plain_secret


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
    with pytest.raises(UnsupportedInputError, match="maxPathLength"):
        self_signed_cert({**ca, "maxPathLength": 1}, "bad")
