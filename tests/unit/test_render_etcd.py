"""Tests for render.etcd: golden files and the properties a working etcd cluster depends on."""

from __future__ import annotations

import dataclasses
import shlex
import subprocess

import pytest
import yaml

from catalog.limits import ETCD_USERS
from config import parse
from config.models import ClusterConfig
from operations.etcd import enable_after, render_access, render_enable, render_prune
from render.credentials import ETCD_MEMBER_CN, ETCD_PATRONI_USER, etcd_patroni_user
from render.etcd import (
    initial_cluster_token,
    peer_url,
    render_etcd,
    render_etcd_cluster,
    render_etcd_health,
    render_etcd_start,
)
from render.paths import ETCD_ROOT_CERT, ETCD_ROOT_KEY, ETCD_TLS_CA, ETCD_TLS_CERT, ETCD_TLS_KEY
from render.patroni import ETCD_USER_TAG, dcs_namespace, render_patroni
from tests.golden_util import FAKE_CREDS, VARIANTS, assert_golden, load, variant_raw


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for member in cfg.etcd.members:
        assert_golden(f"{variant}/etcd-{member.name}.yml", render_etcd(cfg, member))
        assert_golden(f"{variant}/etcd-cluster-{member.name}.env", render_etcd_cluster(cfg, member))
    assert_golden(f"{variant}/pgha-etcd-start", render_etcd_start(cfg))


def _env(text: str) -> dict[str, str]:
    return {k: shlex.split(v)[0] if v else "" for k, _, v in
            (line.partition("=") for line in text.splitlines() if line and not line.startswith("#"))}


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_member_lists_the_whole_cluster(variant: str) -> None:
    cfg = load(variant)
    expected = {m.name: f"https://{m.address}:{cfg.etcd.peer_port}" for m in cfg.etcd.members}
    for member in cfg.etcd.members:
        conf = yaml.safe_load(render_etcd(cfg, member))
        assert conf["name"] == member.name
        assert conf["initial-advertise-peer-urls"] == expected[member.name]
        assert conf["listen-client-urls"].split(",") == [
            f"https://{member.address}:{cfg.etcd.client_port}",
            f"https://127.0.0.1:{cfg.etcd.client_port}",
        ]
        assert conf["advertise-client-urls"] == f"https://{member.address}:{cfg.etcd.client_port}"
        assert conf["data-dir"].endswith(cfg.name)
        # The membership is not in the file the process reads: a change of it restarts no member.
        assert not [k for k in conf if k.startswith("initial-cluster")]
        env = _env(render_etcd_cluster(cfg, member))
        assert dict(item.split("=", 1) for item in env["PGHA_ETCD_INITIAL_CLUSTER"].split(",")) == expected
        assert env["PGHA_ETCD_NAME"] == member.name and env["PGHA_ETCD_PEER_URL"] == expected[member.name]
        assert env["PGHA_ETCD_OTHERS"].split(",") == [f"https://{m.address}:{cfg.etcd.client_port}"
                                                      for m in cfg.etcd.members if m != member]


def test_an_empty_member_joins_a_running_cluster_or_forms_a_new_one() -> None:
    script = render_etcd_start(load("dev"))
    with_data = script.index("exec /usr/bin/etcd --config-file /etc/pgha/etcd.yml")
    # Data made for another peer URL (the host moved with it) is set aside only while the others hold a quorum.
    moved = script.index("mv /var/lib/etcd/pgha-dev /var/lib/etcd/pgha-dev.moved")
    assert script.index("if ! quorum; then") < moved
    assert with_data < moved < script.index("if quorum; then") < script.index("--learner") < script.index(
        "exec /usr/bin/etcd --config-file /var/lib")
    assert "state=new cluster=$PGHA_ETCD_INITIAL_CLUSTER" in script and "state=existing" in script
    # An earlier identity that has run (client URLs published) is removed before the member joins anew.
    assert script.index("change remove") < script.index("change add")


def test_clusters_never_share_a_token() -> None:
    tokens = {initial_cluster_token(load(v)) for v in VARIANTS}
    assert len(tokens) == len(VARIANTS)


def test_a_non_member_is_refused() -> None:
    cfg = load("dev")
    with pytest.raises(ValueError, match=r"not one of etcd\.members"):
        render_etcd(cfg, cfg.postgres.nodes[0])


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_path_is_tls_with_client_certificates(variant: str) -> None:
    cfg = load(variant)
    for member in cfg.etcd.members:
        conf = yaml.safe_load(render_etcd(cfg, member))
        urls = [u for key in ("listen-peer-urls", "listen-client-urls", "initial-advertise-peer-urls",
                              "advertise-client-urls") for u in conf[key].split(",")]
        assert urls and all(u.startswith("https://") for u in urls), urls
        for section in ("client-transport-security", "peer-transport-security"):
            tls = conf[section]
            assert tls["client-cert-auth"] is True
            assert (tls["cert-file"], tls["key-file"], tls["trusted-ca-file"]) == (
                ETCD_TLS_CERT, ETCD_TLS_KEY, ETCD_TLS_CA)
        # The peer port admits the members' certificates only, whose name is no etcd user's.
        assert conf["peer-transport-security"]["allowed-cn"] == [ETCD_MEMBER_CN]
        assert ETCD_MEMBER_CN not in ETCD_USERS


def test_every_etcdctl_call_is_roots_over_tls() -> None:
    cfg = load("prod")
    scripts = [render_etcd_start(cfg), render_etcd_health(cfg), render_prune(cfg),
               render_access(cfg, FAKE_CREDS)]
    for script in scripts:
        calls = [line for line in script.splitlines() if "/usr/bin/etcdctl" in line]
        assert calls and all(f"--cacert={ETCD_TLS_CA} --cert={ETCD_ROOT_CERT} --key={ETCD_ROOT_KEY}" in line
                             for line in calls), calls
        assert "http://" not in script


def test_access_control_is_set_up_before_it_is_enabled_and_the_password_never_is_an_argument() -> None:
    cfg = load("prod")
    script = render_access(cfg, FAKE_CREDS)
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    order = [script.index(s) for s in ("user add root --no-password", "user grant-role root root",
                                        "role add patroni", "role grant-permission patroni --prefix=true readwrite",
                                        "user grant-role patroni patroni", "ctl auth enable")]
    assert order == sorted(order)
    assert f"readwrite {shlex.quote(dcs_namespace(FAKE_CREDS))}" in script
    # The password reaches etcdctl on its standard input, never on its command line.
    quoted = shlex.quote(FAKE_CREDS.etcd)
    lines = [line for line in script.splitlines() if quoted in line]
    assert len(lines) == 2 and all(line.strip().startswith(f"printf '%s\\n' {quoted} | ctl user ") and
                                   "--interactive=false" in line for line in lines), lines


def test_a_host_named_as_an_etcd_user_is_refused() -> None:
    raw = variant_raw("dev")
    for user in ETCD_USERS:
        bad = {**raw, "postgres": {**raw["postgres"], "nodes": [{**raw["postgres"]["nodes"][0], "name": user},
                                                                  *raw["postgres"]["nodes"][1:]]}}
        with pytest.raises(ValueError, match=rf"postgres\.nodes\[0\]\.name: '{user}' given; 'root' and 'patroni' are "
                                             "etcd's user names"):
            parse(bad)


def test_a_password_etcdctl_would_split_is_refused() -> None:
    for bad in ("", "two words", "tab\there"):
        with pytest.raises(ValueError, match=r"credentials\.etcd: empty or holds white space"):
            render_access(load("dev"), dataclasses.replace(FAKE_CREDS, etcd=bad))


def _migrating(variant: str = "prod") -> ClusterConfig:
    raw = variant_raw(variant)
    return parse({**raw, "etcd": {**raw["etcd"], "tls_migration": True}})


def test_the_first_deployment_of_the_move_from_plain_http_serves_both_and_dials_with_certificates() -> None:
    cfg = _migrating()
    port = cfg.etcd.client_port
    for member in cfg.etcd.members:
        conf = yaml.safe_load(render_etcd(cfg, member))
        # Both schemes on the client port; the peers and what is advertised stay plain (members not restarted
        # yet speak nothing else), the TLS settings are loaded for dialling peers that switch later.
        assert conf["listen-client-urls"].split(",") == [
            f"http://{member.address}:{port}", f"https://{member.address}:{port}",
            f"http://127.0.0.1:{port}", f"https://127.0.0.1:{port}"]
        assert conf["advertise-client-urls"] == f"http://{member.address}:{port}"
        assert conf["listen-peer-urls"] == conf["initial-advertise-peer-urls"] == peer_url(cfg, member)
        assert peer_url(cfg, member).startswith("http://")
        assert conf["peer-transport-security"]["allowed-cn"] == [ETCD_MEMBER_CN]
        assert conf["client-transport-security"]["client-cert-auth"] is True
    # Users and roles are made, access control stays off (Patroni has no password yet), and is refused if on.
    access = render_access(cfg, FAKE_CREDS)
    subprocess.run(["bash", "-n"], input=access, text=True, check=True)
    assert "user add root --no-password" in access and "ctl auth enable" not in access
    assert "access control is on already (the move's second deployment ran)" in access
    assert enable_after("x", cfg, None, None, [], None) is None  # type: ignore[arg-type]


def test_the_second_deployment_enables_access_control_only_after_every_patroni_has_its_password() -> None:
    cfg = load("prod")
    access = render_access(cfg, FAKE_CREDS)
    prefix = shlex.quote(dcs_namespace(FAKE_CREDS))
    # Before the nodes: on at once on a new cluster, not while Patroni's keys are there (it runs without one).
    keys, enable = access.index(f"ctl get --prefix --keys-only --limit=1 {prefix}"), access.index("ctl auth enable")
    assert keys < enable
    after = render_enable(cfg, dcs_namespace(FAKE_CREDS))
    subprocess.run(["bash", "-n"], input=after, text=True, check=True)
    assert "ctl auth enable" in after and FAKE_CREDS.etcd not in after


def test_a_rotation_makes_a_new_user_and_removes_the_old_only_once_every_node_logs_in_as_it() -> None:
    cfg = load("prod")
    rotated = cfg.model_copy(update={"rotate": cfg.rotate.model_copy(update={"etcd": 2})})
    assert etcd_patroni_user(0) == ETCD_PATRONI_USER and etcd_patroni_user(2) == "patroni.2"
    # The new user gets Patroni's role; no password is changed in place (that would refuse every Patroni not
    # yet reloaded at its next login).
    access = render_access(rotated, FAKE_CREDS)
    assert "ctl user grant-role patroni.2 patroni" in access and "ctl user passwd patroni " not in access
    # Patroni logs in as it and says so in a tag, which it publishes once that reload is applied.
    patroni = yaml.safe_load(render_patroni(rotated, rotated.postgres.nodes[0], FAKE_CREDS))
    assert patroni["etcd3"]["username"] == "patroni.2" and patroni["tags"] == {ETCD_USER_TAG: "patroni.2"}
    # After the nodes: earlier users go only once every node's member key names the current one.
    namespace = dcs_namespace(FAKE_CREDS)
    after = render_enable(rotated, namespace)
    subprocess.run(["bash", "-n"], input=after, text=True, check=True)
    for node in rotated.postgres.nodes:
        assert shlex.quote(f"{namespace}{rotated.name}/members/{node.name}") in after
    assert after.index(f'grep -qF \'"{ETCD_USER_TAG}":"patroni.2"\'') < after.index('ctl user delete "$old_user"')
    # No tag during the move's first deployment (no login yet).
    moving = yaml.safe_load(render_patroni(_migrating(), rotated.postgres.nodes[0], FAKE_CREDS))
    assert moving["tags"] == {} and "username" not in moving["etcd3"]


def test_a_member_whose_peer_url_changes_scheme_keeps_its_identity() -> None:
    script = render_etcd_start(load("prod"))
    subprocess.run(["bash", "-n"], input=script, text=True, check=True)
    scheme_only = script.index('if [ "${was#*://}" = "${PGHA_ETCD_PEER_URL#*://}" ]; then')
    # Tried before the path that sets the data aside (a member that moved), and by `member update`.
    assert scheme_only < script.index("mv /var/lib/etcd/")
    assert 'change update "$id" --peer-urls="$PGHA_ETCD_PEER_URL"' in script[scheme_only:]
    # The removal of members the stack no longer has matches them by address, whatever their scheme.
    prune = render_prune(load("prod"))
    assert 'sub("^[a-z]+://", "", at)' in prune and "https://" not in prune.split("configured=")[1].split("\n")[0]
