"""Tests for render.etcd: golden files and the properties a working etcd cluster depends on."""

from __future__ import annotations

import pytest
import yaml

from render.etcd import initial_cluster_token, render_etcd
from tests.golden_util import VARIANTS, assert_golden, load


@pytest.mark.parametrize("variant", VARIANTS)
def test_golden(variant: str) -> None:
    cfg = load(variant)
    for member in cfg.etcd.members:
        assert_golden(f"{variant}/etcd-{member.name}.yml", render_etcd(cfg, member))


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_member_lists_the_whole_cluster(variant: str) -> None:
    cfg = load(variant)
    expected = {m.name: f"http://{m.address}:{cfg.etcd.peer_port}" for m in cfg.etcd.members}
    for member in cfg.etcd.members:
        conf = yaml.safe_load(render_etcd(cfg, member))
        cluster = dict(item.split("=", 1) for item in conf["initial-cluster"].split(","))
        assert cluster == expected
        assert conf["name"] == member.name
        assert conf["initial-advertise-peer-urls"] == expected[member.name]
        assert conf["listen-client-urls"].split(",") == [
            f"http://{member.address}:{cfg.etcd.client_port}",
            f"http://127.0.0.1:{cfg.etcd.client_port}",
        ]
        assert conf["advertise-client-urls"] == f"http://{member.address}:{cfg.etcd.client_port}"
        assert conf["initial-cluster-state"] == "new"
        assert conf["data-dir"].endswith(cfg.name)


def test_clusters_never_share_a_token() -> None:
    tokens = {initial_cluster_token(load(v)) for v in VARIANTS}
    assert len(tokens) == len(VARIANTS)


def test_a_non_member_is_refused() -> None:
    cfg = load("dev")
    with pytest.raises(ValueError, match=r"not one of etcd\.members"):
        render_etcd(cfg, cfg.postgres.nodes[0])
