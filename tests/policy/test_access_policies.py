"""Generated credentials only, none in env or command text, and authenticated HAProxy stats."""

from __future__ import annotations

import pytest

from tests.policy.support import (
    HAPROXY,
    KEEPALIVED,
    PASSWORDS,
    PATRONI,
    PGBACKREST,
    StackBuilder,
    build_stack,
    haproxy_cfg,
    healthy_files,
    keepalived_conf,
    messages,
    patroni_yml,
    pgbackrest_conf,
    violations,
)

MEMBERS = ["pg-1", "pg-2", "pg-3"]
LITERAL = "hunter2hunter2"


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_generated_credentials_pass(target: str) -> None:
    resources = build_stack(healthy_files(), target=target)
    for name in ("no-literal-credentials", "container-env-no-credentials", "remote-command-no-inline-credentials",
                 "haproxy-stats-auth", "haproxy-shutdown-sessions"):
        assert violations(name, resources) == [], name


@pytest.mark.parametrize("target", ["docker", "ssh"])
def test_hand_written_passwords_in_rendered_files_fail(target: str) -> None:
    files = healthy_files()
    files["pg-1"][PATRONI] = patroni_yml("pg-1", MEMBERS, superuser=LITERAL)
    files["pg-2"][PGBACKREST] = pgbackrest_conf(cipher=LITERAL)
    files["haproxy-1"][HAPROXY] = haproxy_cfg("haproxy-1", stats=f"admin:{LITERAL}")
    files["haproxy-2"][KEEPALIVED] = keepalived_conf(auth="hunter22")
    text = messages("no-literal-credentials", build_stack(files, target=target))
    assert "pg-1: /etc/patroni/patroni.yml postgresql.authentication.superuser.password is a literal, not the result " \
           "of a random:index/randomPassword:RandomPassword in this stack" in text
    assert "pg-2: /etc/pgbackrest/pgbackrest.conf [global] repo1-cipher-pass is a literal" in text
    assert "haproxy-1: /etc/haproxy/haproxy.cfg listen stats stats auth is a literal" in text
    assert "haproxy-2: /etc/keepalived/keepalived.conf vrrp_instance pgha_dev auth_pass is a literal" in text
    assert LITERAL not in text  # never echo a credential


def test_vrrp_pass_may_be_the_first_8_characters_of_a_generated_password() -> None:
    files = healthy_files()
    files["haproxy-1"][KEEPALIVED] = keepalived_conf(auth=PASSWORDS["superuser"][:8])
    assert violations("no-literal-credentials", build_stack(files)) == []


def test_credentials_without_any_random_password_fail_and_unknown_ones_are_not_judged() -> None:
    assert "is a literal" in messages("no-literal-credentials", build_stack(healthy_files(), passwords={}))
    files = {node: dict.fromkeys(content) for node, content in healthy_files().items()}
    assert violations("no-literal-credentials", build_stack(files, passwords={})) == []


def test_generated_password_in_command_text_or_container_settings_fails() -> None:
    resources = build_stack(healthy_files())
    b = StackBuilder(resources=resources)
    b.add("command:remote:Command", "leaky", {"create": f"echo {PASSWORDS['stats']} | chpasswd"}, b.root)
    b.add("docker:index/container:Container", "leaky-container",
          {"command": ["run", f"--auth={PASSWORDS['restapi']}"], "uploads": []}, b.root)
    text = messages("no-literal-credentials", resources)
    assert "leaky: create contains a generated password" in text
    assert "leaky-container: command contains a generated password" in text


@pytest.mark.parametrize("env", ["POSTGRES_PASSWORD=x1", "PGPASSWORD=x1", "API_KEY=x1", "AWS_SECRET_ACCESS_KEY=x1",
                                 "DATABASE_URL=postgresql://app:x1@db/app"])
def test_credentials_in_container_env_fail(env: str) -> None:
    resources = build_stack({"etcd-1": {}}, extra_env=[env])
    found = violations("container-env-no-credentials", resources)
    assert len(found) == 1 and found[0][0].startswith(f"pgha-dev-etcd-etcd-1: env {env.split('=')[0]} ")
    assert "x1" not in found[0][0]


@pytest.mark.parametrize("env", ["POSTGRES_PASSWORD_FILE=/run/secrets/pw", "PGPASSWORD=", "KEYBOARD=us", "PWD=/x"])
def test_harmless_container_env_passes(env: str) -> None:
    assert violations("container-env-no-credentials", build_stack({"etcd-1": {}}, extra_env=[env])) == []


def test_container_without_env_passes() -> None:
    b = StackBuilder()
    b.add("docker:index/container:Container", "bare", {"image": "x"}, b.root)
    assert violations("container-env-no-credentials", b.resources) == []


@pytest.mark.parametrize("command", ["PGPASSWORD=s3cret psql -h db", "mysql --password=s3cret",
                                     "sshpass -p s3cret ssh host", "curl https://u:s3cret@host/x"])
def test_inline_credentials_in_remote_commands_fail(command: str) -> None:
    b = StackBuilder()
    b.add("command:remote:Command", "setup", {"create": "bash -s", "delete": command}, b.root)
    text = messages("remote-command-no-inline-credentials", b.resources)
    assert text.startswith("setup: delete passes a credential inline") and "s3cret" not in text


@pytest.mark.parametrize("command", ["bash -s", 'PGPASSWORD="$PW" psql', "rm -f /etc/patroni/patroni.yml", None])
def test_commands_without_inline_credentials_pass(command: str | None) -> None:
    b = StackBuilder()
    b.add("command:remote:Command", "setup", {"create": command} if command else {}, b.root)
    assert violations("remote-command-no-inline-credentials", b.resources) == []


@pytest.mark.parametrize("bind", ["*:7000", "0.0.0.0:7000", "10.0.0.31:7000"])
def test_stats_without_auth_fails(bind: str) -> None:
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = haproxy_cfg("haproxy-1", stats="", bind=bind)
    text = messages("haproxy-stats-auth", build_stack(files))
    assert text.startswith(f"haproxy-1: /etc/haproxy/haproxy.cfg listen stats serves the stats page on {bind} "
                           "without `stats auth`")
    assert text.endswith("It listens on every address of the host.") == (not bind.startswith("10."))


def test_stats_on_every_address_with_auth_and_no_stats_at_all_pass() -> None:
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = haproxy_cfg("haproxy-1", bind="*:7000")
    files["haproxy-2"][HAPROXY] = haproxy_cfg("haproxy-2", stats=None)
    assert violations("haproxy-stats-auth", build_stack(files)) == []


def test_stats_enabled_in_defaults_is_checked() -> None:
    cfg = "defaults\n    mode http\n    stats enable\nfrontend web\n    bind *:80\n"
    files = {"haproxy-1": {HAPROXY: cfg}}
    assert "frontend web serves the stats page on *:80 without `stats auth`" in messages("haproxy-stats-auth",
                                                                                        build_stack(files))


def test_servers_without_shutdown_sessions_are_reported() -> None:
    files = healthy_files()
    files["haproxy-1"][HAPROXY] = haproxy_cfg("haproxy-1", shutdown=False)
    assert messages("haproxy-shutdown-sessions", build_stack(files)) == (
        "haproxy-1: /etc/haproxy/haproxy.cfg listen postgres_read_write: servers pg-1, pg-2, pg-3 lack "
        "`on-marked-down shutdown-sessions`; clients stay connected to a dead or demoted primary until `timeout "
        "server`")
    files["haproxy-1"] = {}
    assert violations("haproxy-shutdown-sessions", build_stack(files)) == []
