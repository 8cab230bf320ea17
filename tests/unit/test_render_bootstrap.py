"""Tests for render.bootstrap: SCRAM verifiers, the post-bootstrap SQL and script."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from render.bootstrap import (
    render_post_bootstrap_script,
    render_post_bootstrap_sql,
    scram_salt,
    scram_sha256_verifier,
)
from render.paths import BOOTSTRAP_SQL, PG_BIN
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load

# RFC 7677, section 3: the SCRAM-SHA-256 exchange for user "user", password "pencil".
RFC_SALT = base64.b64decode("W22ZaJ0SNY7soEsUEjb6gQ==")
RFC_AUTH_MESSAGE = (
    b"n=user,r=rOprNGfwEbeRWgbNEkqO,"
    b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,"
    b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
)
RFC_CLIENT_PROOF = base64.b64decode("dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
RFC_SERVER_SIGNATURE = base64.b64decode("6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def _parse(verifier: str) -> tuple[int, bytes, bytes, bytes]:
    scheme, rest = verifier.split("$", 1)
    assert scheme == "SCRAM-SHA-256"
    params, keys = rest.split("$")
    iterations, salt = params.split(":")
    stored, server = keys.split(":")
    return int(iterations), base64.b64decode(salt), base64.b64decode(stored), base64.b64decode(server)


def test_scram_matches_the_rfc_7677_exchange() -> None:
    iterations, salt, stored_key, server_key = _parse(scram_sha256_verifier("pencil", RFC_SALT))
    assert (iterations, salt) == (4096, RFC_SALT)
    signature = hmac.new(server_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    assert signature == RFC_SERVER_SIGNATURE
    # ClientProof = ClientKey XOR HMAC(StoredKey, AuthMessage); the server checks H(ClientKey) == StoredKey.
    client_signature = hmac.new(stored_key, RFC_AUTH_MESSAGE, hashlib.sha256).digest()
    client_key = bytes(a ^ b for a, b in zip(RFC_CLIENT_PROOF, client_signature, strict=True))
    assert hashlib.sha256(client_key).digest() == stored_key


def test_scram_matches_an_independent_computation() -> None:
    password, salt = FAKE_CREDS.app, b"0123456789abcdef"
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, 4096)
    stored = hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest()
    server = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    expected = f"SCRAM-SHA-256$4096:{b64(salt).decode()}${b64(stored).decode()}:{b64(server).decode()}"
    assert scram_sha256_verifier(password, salt) == expected


def test_scram_refuses_what_it_cannot_prepare() -> None:
    with pytest.raises(ValueError, match="ASCII"):
        scram_sha256_verifier("pässword", b"salt")


def test_salts_are_stable_and_distinct() -> None:
    assert scram_salt("c", "app") == scram_salt("c", "app")
    assert len({scram_salt("c", "app"), scram_salt("c", "app_ro"), scram_salt("d", "app")}) == 3
    assert len(scram_salt("c", "app")) == 16


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    assert_golden(f"{variant}/post-bootstrap.sql", render_post_bootstrap_sql(cfg, FAKE_CREDS))
    assert_golden(f"{variant}/pgha-post-bootstrap.sh", render_post_bootstrap_script(cfg))


@pytest.mark.parametrize("variant", VARIANTS)
def test_sql_holds_verifiers_never_passwords(variant: str) -> None:
    cfg = load(variant)
    sql = render_post_bootstrap_sql(cfg, FAKE_CREDS)
    assert sql.startswith("-- Managed by pgha")
    for secret in (FAKE_CREDS.app, FAKE_CREDS.readonly, "app user", "ro user"):
        assert secret not in sql
    pg = cfg.postgres
    app_verifier = scram_sha256_verifier(FAKE_CREDS.app, scram_salt(cfg.name, pg.app_user))
    ro_verifier = scram_sha256_verifier(FAKE_CREDS.readonly, scram_salt(cfg.name, pg.readonly_user))
    assert f"CREATE ROLE \"{pg.app_user}\" LOGIN PASSWORD '{app_verifier}';" in sql
    assert f"CREATE ROLE \"{pg.readonly_user}\" LOGIN PASSWORD '{ro_verifier}';" in sql
    assert f'CREATE DATABASE "{pg.database}" OWNER "{pg.app_user}"' in sql
    assert f'GRANT pg_read_all_data TO "{pg.readonly_user}";' in sql


def test_script_stops_on_the_first_error_and_creates_the_stanza() -> None:
    script = render_post_bootstrap_script(load("dev"))
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash"
    assert lines[1].startswith("# Managed by pgha")
    assert "set -euo pipefail" in lines
    assert f'"{PG_BIN}/psql" "$conn" --no-psqlrc --quiet -v ON_ERROR_STOP=1 -f "{BOOTSTRAP_SQL}"' in lines
    assert lines[-1] == "pgbackrest --stanza=pgha-dev stanza-create"
