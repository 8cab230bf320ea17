"""Credential rotation on request (pgha:rotate): the setting, the passwords it replaces, and the step that sets
the new passwords in PostgreSQL before any file carries them."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest

from config import ConfigError, collect, parse
from operations.passwords import render_password_script, render_password_sql, roles
from render.credentials import Credentials
from tests.support.mock_runtime import SSH_KEY, Graph, is_secret, reveal, run_program, stack_config

PASSWORD = "random:index/randomPassword:RandomPassword"
CREDS = Credentials(superuser="Su1", replication="Re1", rewind="Rw1", app="Ap1", readonly="Ro1", restapi="Api1",
                    keepalived="Kp1", stats="St1", cipher="Ci1", etcd="Et1", dcs_namespace="ns")


def config_with(**rotate: Any) -> dict[str, Any]:
    return {**collect(stack_config("dev")[0]), "rotate": rotate}


def test_the_cipher_passphrase_is_refused_before_anything_is_created() -> None:
    with pytest.raises(ConfigError) as error:
        parse(config_with(cipher=1))
    message = str(error.value)
    assert "rotate.cipher" in message and "1 given" in message
    assert "cannot be rotated" in message and "encrypted with it" in message


@pytest.mark.parametrize(("rotate", "expected"), [
    ({"app": -1}, "rotate.app: Input should be greater than or equal to 0"),
    ({"ap": 1}, "rotate.ap: unknown key"),
])
def test_bad_rotation_settings_name_the_field(rotate: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse(config_with(**rotate))


def passwords(graph: Graph) -> dict[str, dict[str, Any]]:
    return {p.name.removeprefix(f"pgha-{graph.stack}-").removesuffix("-password"): p.inputs
            for p in graph.of_type(PASSWORD)}


def test_generation_zero_sends_no_keepers_and_a_rotation_changes_only_its_password() -> None:
    plain = passwords(run_program("dev"))
    assert all("keepers" not in inputs for inputs in plain.values()), "stacks made before rotation keep theirs"
    rotated = passwords(run_program("dev", {"pgha:rotate": {"app": 2, "replication": 1}}))
    assert rotated["app"]["keepers"] == {"rotation": "2"}
    assert rotated["replication"]["keepers"] == {"rotation": "1"}
    assert {k for k, v in rotated.items() if v != plain[k]} == {"app", "replication"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_postgres_node_sets_the_passwords_before_its_converge(stack: str) -> None:
    graph = run_program(stack, secrets_config={"sshPrivateKey": SSH_KEY} if stack == "prod" else None)
    for node in ("pg-1", "pg-2", "pg-3"):
        step = graph.named(f"pgha-{stack}-{node}-patroni-passwords")
        converge = graph.named(f"pgha-{stack}-{node}-patroni-service")
        assert step.urn in converge.dependencies, "the converge waits for the roles' passwords"
        assert is_secret(step.inputs["stdin"]) and {"stdout", "stderr"} <= set(step.additional_secret_outputs)
        if stack == "prod":
            assert graph.named(f"pgha-prod-{node}-patroni-install").urn in step.dependencies, "once it can run"
        else:
            # Not after its container (which may wait in the rolling chain for this very step's peers).
            assert graph.named(f"pgha-dev-{node}-patroni").urn not in step.dependencies
            assert graph.named("pgha-dev-etcd-access").urn in step.dependencies
        command = step.inputs["create"]
        assert "PGPASSWORD" not in command and not re.search(r"[A-Za-z0-9]{32}", command)
        script = reveal(step.inputs["stdin"])
        app = reveal(graph.named(f"pgha-{stack}-app-password").outputs["result"])
        replication = reveal(graph.named(f"pgha-{stack}-replication-password").outputs["result"])
        # Members check the roles they connect with over the network (pg_hba admits only those from them).
        assert replication in script, "the step checks the new password itself (in a pgpass file)"
        assert app not in script and "replication=true" in script and "IDENTIFY_SYSTEM" in script
        assert f"PASSWORD '{app}'" not in script, "the server gets verifiers, never a password"


def test_the_sql_sets_verifiers_only_where_they_differ() -> None:
    cfg = parse(collect(stack_config("dev")[0]))
    sql = render_password_sql(cfg, CREDS)
    assert [r for r, _ in roles(cfg, CREDS)] == ["postgres", "replicator", "rewind", "app", "app_ro"]
    assert sql.count("ALTER ROLE") == 5 and sql.count("IS DISTINCT FROM 'SCRAM-SHA-256$4096:") == 5
    assert "SET log_statement = 'none'" in sql
    for _, password in roles(cfg, CREDS):
        assert password not in sql


def test_the_script_names_the_leaders_it_tries_and_skips_a_first_deployment() -> None:
    cfg = parse(collect(stack_config("dev")[0]))
    script = render_password_script(cfg, cfg.postgres.nodes[0], CREDS, "-----BEGIN CERTIFICATE-----\nCA\n"
                                                                       "-----END CERTIFICATE-----\n")
    assert "for address in 10.89.0.21 10.89.0.22 10.89.0.23" in script
    assert "the roles get their passwords when the cluster bootstraps" in script
    assert 'if [ "$leader" = 10.89.0.21 ]' in script
    assert "sslmode=verify-full sslrootcert=$ca" in script, "its own copy of the CA: the node's is not written yet"
    assert "cat > \"$ca\" <<'PGHA_CA'\n-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\nPGHA_CA" in script


# ---------------------------------------------------------------- TLS


@pytest.mark.parametrize(("tls", "expected"), [
    ({"renew_before_days": 30, "server_validity_days": 30}, "pgha:tls.renew_before_days: 30 given with "
                                                            "server_validity_days 30; it must be smaller"),
    ({"trust_previous_ca": True}, "pgha:tls.trust_previous_ca: true given with ca_generation 0; there is no "
                                  "previous CA"),
    ({"ca_generation": -1}, "tls.ca_generation: Input should be greater than or equal to 0"),
])
def test_bad_tls_settings_name_the_field(tls: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        parse({**collect(stack_config("dev")[0]), "tls": tls})


def names(graph: Graph, kind: str) -> set[str]:
    return {r.name for r in graph.of_type(kind)}


def test_a_ca_rotation_keeps_the_first_cas_names_and_cross_signs_the_new_one() -> None:
    plain = run_program("dev")
    assert names(plain, "tls:index/selfSignedCert:SelfSignedCert") == {"pgha-dev-ca-cert"}
    overlap = run_program("dev", {"pgha:tls": {"ca_generation": 1, "trust_previous_ca": True}})
    assert names(overlap, "tls:index/selfSignedCert:SelfSignedCert") == {"pgha-dev-ca-cert", "pgha-dev-ca1-cert"}
    cross = overlap.named("pgha-dev-ca1-cross-cert")
    assert cross.inputs["isCaCertificate"] is True
    assert overlap.named("pgha-dev-ca-cert").urn in cross.dependencies, "signed by the previous CA"
    assert overlap.named("pgha-dev-ca1-key").urn in overlap.named("pgha-dev-ca1-cross-request").dependencies
    leaf = overlap.named("pgha-dev-pg-1-tls-cert")
    assert overlap.named("pgha-dev-ca1-cert").urn in leaf.dependencies, "the new CA signs the servers"
    new_pem = overlap.named("pgha-dev-ca1-cert").outputs["certPem"]
    old_pem = overlap.named("pgha-dev-ca-cert").outputs["certPem"]
    assert overlap.outputs["ca_certificate"] == new_pem + old_pem, "the output trusts both, the new one first"
    step = reveal(overlap.named("pgha-dev-pg-1-patroni-service").inputs["stdin"])
    chain = reveal(leaf.outputs["certPem"]) + reveal(cross.outputs["certPem"])
    assert base64.b64encode(chain.encode()).decode() in step, "servers send their certificate and the cross one"
    done = run_program("dev", {"pgha:tls": {"ca_generation": 1}})
    assert names(done, "tls:index/selfSignedCert:SelfSignedCert") == {"pgha-dev-ca1-cert"}
    assert not names(done, "tls:index/locallySignedCert:LocallySignedCert") & {"pgha-dev-ca1-cross-cert"}
    assert done.outputs["ca_certificate"] == done.named("pgha-dev-ca1-cert").outputs["certPem"]


def test_the_server_certificate_lifetime_comes_from_the_stack() -> None:
    leaf = run_program("dev", {"pgha:tls": {"server_validity_days": 90, "renew_before_days": 10}}).named(
        "pgha-dev-pg-1-tls-cert")
    assert leaf.inputs["validityPeriodHours"] == 90 * 24 and leaf.inputs["earlyRenewalHours"] == 10 * 24
