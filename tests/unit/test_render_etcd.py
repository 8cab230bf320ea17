"""Tests for render.etcd: golden files and the properties a working etcd cluster depends on."""

from __future__ import annotations

import shlex

import pytest
import yaml

from render.etcd import initial_cluster_token, render_etcd, render_etcd_cluster, render_etcd_start
from tests.golden_util import VARIANTS, assert_golden, load


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
    expected = {m.name: f"http://{m.address}:{cfg.etcd.peer_port}" for m in cfg.etcd.members}
    for member in cfg.etcd.members:
        conf = yaml.safe_load(render_etcd(cfg, member))
        assert conf["name"] == member.name
        assert conf["initial-advertise-peer-urls"] == expected[member.name]
        assert conf["listen-client-urls"].split(",") == [
            f"http://{member.address}:{cfg.etcd.client_port}",
            f"http://127.0.0.1:{cfg.etcd.client_port}",
        ]
        assert conf["advertise-client-urls"] == f"http://{member.address}:{cfg.etcd.client_port}"
        assert conf["data-dir"].endswith(cfg.name)
        # The membership is not in the file the process reads: a change of it restarts no member.
        assert not [k for k in conf if k.startswith("initial-cluster")]
        env = _env(render_etcd_cluster(cfg, member))
        assert dict(item.split("=", 1) for item in env["PGHA_ETCD_INITIAL_CLUSTER"].split(",")) == expected
        assert env["PGHA_ETCD_NAME"] == member.name and env["PGHA_ETCD_PEER_URL"] == expected[member.name]
        assert env["PGHA_ETCD_OTHERS"].split(",") == [f"http://{m.address}:{cfg.etcd.client_port}"
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
