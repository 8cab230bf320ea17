"""SSH host keys: every rejection of ssh.host_keys and ssh.known_hosts_file, known_hosts lookups as OpenSSH does
them (hashed names, `[host]:port`, patterns, markers), and the key each remote command pins."""

from __future__ import annotations

import base64
import hashlib
import hmac
import subprocess
from pathlib import Path
from typing import Any

import pulumi
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from config import ConfigError, collect, parse
from config.host_keys import HOST_KEY_TYPES, HostKey, choose, parse_key, parse_known_hosts
from tests.support.mock_runtime import SSH_KEY, prod_ssh, reveal, run_program, stack_config

COMMAND = "command:remote:Command"
ADDRESSES = {"etcd-1": "192.0.2.11", "etcd-2": "192.0.2.12", "etcd-3": "192.0.2.13", "pg-1": "192.0.2.21",
             "pg-2": "192.0.2.22", "pg-3": "192.0.2.23", "haproxy-1": "192.0.2.31", "haproxy-2": "192.0.2.32"}


def public(key: Any, comment: str = "root@host") -> str:
    """The .pub line of a private key, as ssh-keygen writes it."""
    line = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return f"{line.decode()} {comment}"


def ed25519_line() -> str:
    return public(ed25519.Ed25519PrivateKey.generate())


def raw(**ssh: Any) -> dict[str, Any]:
    """The prod stack's keys with `pgha:ssh` replaced by `ssh`."""
    return {**collect(stack_config("prod")[0]), "ssh": ssh}


def every_key(line: str | None = None) -> dict[str, str]:
    return {address: line or ed25519_line() for address in ADDRESSES.values()}


# ------------------------------------------------------------------------------------------ one key


@pytest.mark.parametrize("key", [ed25519.Ed25519PrivateKey.generate(), ec.generate_private_key(ec.SECP256R1()),
                                 ec.generate_private_key(ec.SECP384R1()), ec.generate_private_key(ec.SECP521R1())],
                         ids=HOST_KEY_TYPES)
def test_the_key_types_sshd_offers_are_taken_without_their_comment(key: Any) -> None:
    line = public(key)
    parsed = parse_key(line)
    assert parsed.type in HOST_KEY_TYPES and parsed.line == " ".join(line.split()[:2])
    digest = hashlib.sha256(base64.b64decode(parsed.blob)).digest()
    assert parsed.fingerprint == "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def test_the_fingerprint_is_the_one_ssh_keygen_prints(tmp_path: Path) -> None:
    line = ed25519_line()
    (tmp_path / "key.pub").write_text(line + "\n")
    printed = subprocess.run(["ssh-keygen", "-lf", str(tmp_path / "key.pub")], capture_output=True, text=True,
                             check=True).stdout
    assert parse_key(line).fingerprint == printed.split()[1]


def blob(*parts: bytes) -> str:
    return base64.b64encode(b"".join(len(p).to_bytes(4, "big") + p for p in parts)).decode()


ED25519 = ed25519_line().split()[1]
REJECTED_KEYS = [
    ("ssh-ed25519", "'ssh-ed25519' is not 'TYPE BASE64 [COMMENT]'"),
    (public(rsa.generate_private_key(public_exponent=65537, key_size=2048)),
     "key type ssh-rsa: pulumi-command asks the host for exactly the pinned key's type, for RSA keys the SHA-1 "
     "'ssh-rsa' that OpenSSH 8.8 and later no longer offers"),
    (f"ssh-dss {ED25519}", "key type ssh-dss: OpenSSH no longer has DSA host keys"),
    (f"sk-ssh-ed25519@openssh.com {ED25519}", "key type sk-ssh-ed25519@openssh.com: not a host key type sshd offers"),
    ("ssh-ed25519 AAAA!!not-base64", "ssh-ed25519 key: 'AAAA!!not-base64...' is not valid base64"),
    (f"ecdsa-sha2-nistp256 {ED25519}",
     "the key is declared ecdsa-sha2-nistp256 but its base64 holds a ssh-ed25519 key"),
    (f"ssh-ed25519 {blob(b'ssh-ed25519', b'short')}", "the ssh-ed25519 key's base64 does not hold a well-formed"),
    (f"ecdsa-sha2-nistp256 {blob(b'ecdsa-sha2-nistp256', b'nistp384', b'point')}",
     "the ecdsa-sha2-nistp256 key's base64 does not hold a well-formed"),
    (f"ssh-ed25519 {base64.b64encode(b'xx').decode()}", "the key is truncated"),
]


@pytest.mark.parametrize(("line", "message"), REJECTED_KEYS, ids=[m[:30] for _, m in REJECTED_KEYS])
def test_a_malformed_or_unusable_key_is_refused_naming_the_address(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(raw(host_keys={**every_key(), "192.0.2.21": line}))
    text = str(caught.value)
    assert "pgha:ssh.host_keys.192.0.2.21: " in text and message in text, text


def test_keys_are_given_by_address_not_by_name() -> None:
    with pytest.raises(ConfigError, match=r"pgha:ssh.host_keys.pg-1\[key\]: Input is not a valid IPv4 address"):
        parse(raw(host_keys={**every_key(), "pg-1": ed25519_line()}))


# ------------------------------------------------------------------------------------------ every address


def test_every_address_needs_a_key_named_with_its_hosts_and_how_to_collect_it() -> None:
    keys = every_key()
    del keys["192.0.2.21"], keys["192.0.2.31"]
    with pytest.raises(ConfigError) as caught:
        parse(raw(host_keys=keys))
    text = str(caught.value)
    assert "pgha:ssh.host_keys: no key for 192.0.2.21 (pg-1); 192.0.2.31 (haproxy-1). " in text, text
    assert "/etc/ssh/ssh_host_ed25519_key.pub" in text and "ssh-keygen -lf" in text
    with pytest.raises(ConfigError, match=r"pgha:ssh.host_keys: no key for 192.0.2.11 \(etcd-1\); "):
        parse({k: v for k, v in raw().items() if k != "ssh"})


def test_services_sharing_an_address_share_its_key_and_keys_of_other_addresses_are_kept() -> None:
    data = raw(host_keys={**every_key(), "198.51.100.7": ed25519_line()})
    data["postgres"]["nodes"][0]["address"] = "192.0.2.11"  # pg-1 on etcd-1's machine
    cfg = parse(data)
    assert sorted(cfg.pinned_host_keys()) == sorted(set(ADDRESSES.values()) - {"192.0.2.21"})
    del data["ssh"]["host_keys"]["192.0.2.11"]
    with pytest.raises(ConfigError, match=r"no key for 192.0.2.11 \(etcd-1, pg-1\)\. "):
        parse(data)


# ------------------------------------------------------------------------------------------ known_hosts


def hashed(name: str, line: str) -> str:
    salt = bytes(range(20))
    mac = hmac.new(salt, name.encode(), hashlib.sha1).digest()
    return f"|1|{base64.b64encode(salt).decode()}|{base64.b64encode(mac).decode()} {line}"


def test_known_hosts_lookups_follow_openssh() -> None:
    ecdsa, ed, other = (public(ec.generate_private_key(ec.SECP256R1())), ed25519_line(), ed25519_line())
    rsa_line = public(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    entries = parse_known_hosts("\n".join([
        "# a comment", "",
        f"192.0.2.11 {rsa_line}", f"192.0.2.11,web {ecdsa}", f"192.0.2.11 {ed}",  # ed25519 preferred, rsa never
        hashed("192.0.2.12", ed), hashed("[192.0.2.13]:2222", ed),
        f"10.1.* {other}", f"!10.2.0.99,10.2.0.9? {ed}", f"10.1.0.1 {ed}",
        f"192.0.2.14 {rsa_line}", f"@revoked 192.0.2.15 {ed}", f"192.0.2.15 {ed}",
        f"@cert-authority 192.0.2.16 {ed}",
    ]))
    key = HostKey(*ed.split()[:2])
    assert choose(entries, "192.0.2.11", 22) == key
    assert choose(entries, "192.0.2.12", 22) == key, "a hashed name (HMAC-SHA1 with its salt)"
    assert choose(entries, "192.0.2.12", 2222) == "no line for [192.0.2.12]:2222", "off port 22: [host]:port only"
    assert choose(entries, "192.0.2.13", 2222) == key
    assert choose(entries, "10.1.7.7", 22) == HostKey(*other.split()[:2]), "a wildcard pattern"
    assert choose(entries, "10.1.0.1", 22) == HostKey(*other.split()[:2]), "of two keys of a type, the first line's"
    assert choose(entries, "10.2.0.98", 22) == key, "a wildcard pattern"
    assert choose(entries, "10.2.0.99", 22) == "no line for 10.2.0.99", "a negated pattern excludes the line"
    assert choose(entries, "192.0.2.13", 22) == "no line for 192.0.2.13"
    only = parse_known_hosts(f"192.0.2.14 {rsa_line}\n@revoked 192.0.2.15 {ed}\n192.0.2.15 {ed}\n"
                             f"@cert-authority 192.0.2.16 {ed}\n")
    assert str(choose(only, "192.0.2.14", 22)).startswith("192.0.2.14: ssh-rsa only (pulumi-command asks")
    assert choose(only, "192.0.2.15", 22) == "192.0.2.15: its key is @revoked"
    assert choose(only, "192.0.2.16", 22) == ("192.0.2.16: only @cert-authority lines (a pin is one host key, "
                                              "not a CA)")


def test_a_hashed_file_written_by_ssh_keygen_is_read(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    lines = {address: ed25519_line() for address in ADDRESSES.values()}
    path.write_text("".join(f"{a} {k}\n" for a, k in lines.items()))
    subprocess.run(["ssh-keygen", "-H", "-f", str(path)], capture_output=True, check=True)
    assert "192.0.2" not in path.read_text(), "every name hashed"
    cfg = parse(raw(known_hosts_file=str(path)))
    pinned = cfg.pinned_host_keys((str(path), path.read_text()))
    assert {a: k.line for a, k in pinned.items()} == {a: " ".join(k.split()[:2]) for a, k in lines.items()}


def test_a_known_hosts_file_missing_hosts_is_refused_by_the_program(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    path.write_text("".join(f"[{a}]:2200 {ed25519_line()}\n" for a in ADDRESSES.values() if a != "192.0.2.22"))
    ssh = {"user": "root", "port": 2200, "known_hosts_file": str(path)}
    with pytest.raises(pulumi.RunError) as caught:
        run_program("prod", {"ssh": ssh}, secrets_config={"sshPrivateKey": SSH_KEY})
    assert (f"pgha:ssh.known_hosts_file: {path} has no usable key for 192.0.2.22 (pg-2): no line for "
            "[192.0.2.22]:2200. The ssh target checks every host's key") in str(caught.value)
    with pytest.raises(pulumi.RunError, match=r"pgha:ssh.known_hosts_file: cannot read .*/gone: No such file"):
        run_program("prod", {"ssh": {**ssh, "known_hosts_file": str(tmp_path / "gone")}},
                    secrets_config={"sshPrivateKey": SSH_KEY})


# ------------------------------------------------------------------------------------------ what is declared


def test_every_command_pins_its_hosts_key_a_key_given_inline_before_the_files(tmp_path: Path) -> None:
    path = tmp_path / "known_hosts"
    from_file = {a: ed25519_line() for a in ADDRESSES.values()}
    inline = ed25519_line()
    path.write_text("".join(f"{a} {k}\n" for a, k in from_file.items()))
    graph = run_program("prod", {"ssh": {"known_hosts_file": str(path), "host_keys": {"192.0.2.21": inline}}},
                        secrets_config={"sshPrivateKey": SSH_KEY})
    expected = {a: " ".join(k.split()[:2]) for a, k in {**from_file, "192.0.2.21": inline}.items()}
    commands = graph.of_type(COMMAND)
    assert commands
    for cmd in commands:
        conn = reveal(cmd.inputs["connection"])
        assert conn["hostKey"] == expected[conn["host"]], cmd.name


def test_the_prod_stack_file_says_its_keys_are_placeholders() -> None:
    cfg = parse(raw(**prod_ssh()))
    for key in cfg.pinned_host_keys().values():
        assert b"pgha-placeholder-replace-me" in base64.b64decode(key.blob)


def test_a_host_that_leaves_needs_its_key_until_it_has_left() -> None:
    raw_prod = collect(stack_config("prod")[0])
    three = {**raw_prod["haproxy"],
             "nodes": [*raw_prod["haproxy"]["nodes"], {"name": "haproxy-3", "address": "192.0.2.33"}]}
    kept = prod_ssh(["192.0.2.33"])
    first = run_program("prod", {"haproxy": three, "ssh": kept}, secrets_config={"sshPrivateKey": SSH_KEY})
    with pytest.raises(ValueError, match=r"pgha:ssh.host_keys: no key for 192.0.2.33 \(haproxy-3\)\. .* \(haproxy-3 "
                                         r"leaves the stack: its leave step runs there, so keep its key"):
        run_program("prod", previous_outputs=dict(first.outputs), secrets_config={"sshPrivateKey": SSH_KEY})
    graph = run_program("prod", {"ssh": kept}, previous_outputs=dict(first.outputs),
                        secrets_config={"sshPrivateKey": SSH_KEY})
    leave = reveal(graph.named("pgha-prod-haproxy-haproxy-3-leave").inputs["connection"])
    assert leave["host"] == "192.0.2.33" and leave["hostKey"] == " ".join(kept["host_keys"]["192.0.2.33"].split()[:2])
