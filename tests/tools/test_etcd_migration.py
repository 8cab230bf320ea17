"""The move of a running etcd cluster from plain HTTP (as an earlier pgha ran it) to TLS with access control,
on real etcd members: the first deployment (`etcd.tls_migration: true`) restarts them one at a time serving both
schemes, the second one at a time in TLS only, each member keeping its identity and the data; the access control
goes on only once Patroni's own client has its password, and from then on a client without it is refused."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from config import ClusterConfig, parse
from operations.etcd import render_access, render_enable
from render.etcd import ETCDCTL_ARGS, render_etcd
from render.paths import ETCD_CONFIG, ETCD_HEALTH_SCRIPT, ETCD_START_SCRIPT, PATRONI_CONFIG
from render.patroni import dcs_namespace, render_patroni
from tests.golden_util import FAKE_CREDS, remap, variant_raw
from tests.tools import docker_boxes
from tests.tools.conftest import ETCD_CA, etcd_files
from tests.tools.docker_boxes import BLOCKS, ToolsEnv

pytestmark = pytest.mark.tools

CREDS = dataclasses.replace(FAKE_CREDS, etcd="EtcdMigration0123456789abcdefghi")
HOSTS = (56, 57, 58)


def _config(migration: bool) -> ClusterConfig:
    raw: dict[str, Any] = variant_raw("dev")
    members = [{"name": f"etcd-{n}", "address": f"10.89.0.{n}"} for n in HOSTS]
    etcd = {**raw["etcd"], "members": members, "tls_migration": migration}
    return parse(remap({**raw, "name": "pgha-migration", "etcd": etcd}, BLOCKS["dev"]))


MOVING, FINAL = _config(True), _config(False)


def _plain(member_index: int) -> str:
    """etcd.yml as an earlier pgha wrote it: plain HTTP everywhere, no TLS settings."""
    conf = yaml.safe_load(render_etcd(MOVING, MOVING.etcd.members[member_index]))
    conf["listen-client-urls"] = ",".join(u for u in conf["listen-client-urls"].split(",") if u.startswith("http:"))
    del conf["client-transport-security"], conf["peer-transport-security"]
    return yaml.safe_dump(conf)


def _ctl(box: docker_boxes.Container, cfg: ClusterConfig, *args: str, check: bool = True
         ) -> subprocess.CompletedProcess[str]:
    scheme = "http" if cfg.etcd.tls_migration else "https"
    return box.exec(*ETCDCTL_ARGS, f"--endpoints={scheme}://127.0.0.1:{cfg.etcd.client_port}", *args, check=check)


def _run(box: docker_boxes.Container, script: str) -> subprocess.CompletedProcess[str]:
    """A step's script run on `box` as the program runs it (bash on its standard input)."""
    return docker_boxes.docker("exec", "-i", box.name, "bash", "-s", stdin=script.encode(), check=False)


def _members(box: docker_boxes.Container, cfg: ClusterConfig) -> dict[str, str]:
    """Member name -> "ID peer-URL", as the cluster lists them."""
    listed = json.loads(_ctl(box, cfg, "member", "list", "-w", "json").stdout)["members"]
    return {m["name"]: f"{m['ID']} {m['peerURLs'][0]}" for m in listed}


def _roll(boxes: list[docker_boxes.Container], cfg: ClusterConfig, what: str) -> None:
    """Restart the members one at a time on `cfg`'s files, each healthy before the next, as a rolling
    deployment does."""
    for box, member in zip(boxes, cfg.etcd.members, strict=True):
        box.put(etcd_files(cfg, member))
        docker_boxes.docker("restart", box.name)
        def healthy(b: docker_boxes.Container = box) -> bool:
            return b.exec("bash", ETCD_HEALTH_SCRIPT).returncode == 0

        docker_boxes.wait_for(f"{what}: {member.name} healthy again", healthy, deadline_s=60)


def _patroni(cfg: ClusterConfig, tools_env: ToolsEnv, timeout_s: int = 40) -> subprocess.CompletedProcess[str]:
    """Patroni 4's own etcd client on the rendered patroni.yml: it registers the node and reads it back."""
    node = cfg.postgres.nodes[0]
    files = {PATRONI_CONFIG: render_patroni(cfg, node, CREDS), **ETCD_CA.node_files(cfg, node),
             **ETCD_CA.patroni_etcd_files()}
    box = docker_boxes.start("pgha-tools-migration-patroni", network=tools_env.network, files=files)
    script = f"""
import json
from patroni.config import Config
from patroni.dcs import get_dcs
dcs = get_dcs(Config("{PATRONI_CONFIG}"))
touched = dcs.touch_member({{"conn_url": "postgres://pgha-tools", "state": "running", "role": "replica"}})
print(json.dumps({{"touched": touched, "members": [m.name for m in dcs.get_cluster().members]}}))
"""
    try:
        return box.exec("timeout", str(timeout_s), "python3", "-c", script, timeout=timeout_s + 30)
    finally:
        docker_boxes.docker("rm", "-f", box.name, check=False)


@pytest.fixture(scope="module")
def plain_cluster(tools_env: ToolsEnv) -> Iterator[list[docker_boxes.Container]]:
    boxes = []
    try:
        for i, member in enumerate(MOVING.etcd.members):
            files = {**etcd_files(MOVING, member), ETCD_CONFIG: _plain(i)}
            boxes.append(docker_boxes.start(f"pgha-tools-migration-{member.name}", ("bash", ETCD_START_SCRIPT),
                                            tools_env.network, str(member.address), files))
        docker_boxes.wait_for("three healthy plain members", lambda: all(
            b.exec("bash", ETCD_HEALTH_SCRIPT).returncode == 0 for b in boxes), deadline_s=60)
        yield boxes
    finally:
        for box in boxes:
            docker_boxes.docker("rm", "-f", box.name, check=False)


def test_a_plain_http_cluster_moves_to_tls_and_access_control_in_two_deployments(
        plain_cluster: list[docker_boxes.Container], tools_env: ToolsEnv) -> None:
    boxes, first = plain_cluster, plain_cluster[0]
    prefix = dcs_namespace(CREDS)
    _ctl(first, MOVING, "put", "pgha-kept", "before")
    before = _members(first, MOVING)
    assert all(" http://" in m for m in before.values()), before
    # The control: the plain cluster speaks no TLS.
    assert _ctl(first, FINAL, "get", "pgha-kept", check=False).returncode != 0

    # First deployment: both schemes on the client port, the certificates loaded, peers still plain.
    _roll(boxes, MOVING, "first deployment")
    assert _members(first, MOVING) == before
    for cfg in (MOVING, FINAL):
        assert _ctl(first, cfg, "get", "--print-value-only", "pgha-kept").stdout.strip() == "before"
    # Patroni connects over TLS without a password; the users are made, the access control stays off.
    assert json.loads(_patroni(MOVING, tools_env).stdout)["touched"] is True
    made = _run(first, render_access(MOVING, CREDS))
    assert made.returncode == 0, made.stdout + made.stderr
    assert "Authentication Status: false" in _ctl(first, FINAL, "auth", "status").stdout

    # Second deployment: each member switches its peer URL by `member update`, keeping its identity.
    _roll(boxes, FINAL, "second deployment")
    after = _members(first, FINAL)
    assert after == {name: entry.replace(" http://", " https://") for name, entry in before.items()}, after
    assert _ctl(first, FINAL, "get", "--print-value-only", "pgha-kept").stdout.strip() == "before"
    logs = boxes[1].logs()
    assert "the peer URL changes from http://" in logs and "updating member" in logs
    # Plain HTTP is gone from the client port.
    assert _ctl(first, MOVING, "get", "pgha-kept", check=False).returncode != 0

    # Before the nodes: Patroni's keys are there (it runs without a password), so the access control waits.
    access = _run(first, render_access(FINAL, CREDS))
    assert access.returncode == 0 and f"Patroni runs under {prefix} without a password" in access.stdout
    assert "Authentication Status: false" in _ctl(first, FINAL, "auth", "status").stdout
    # After the nodes (they took the password by reload): on.
    enabled = _run(first, render_enable(FINAL, prefix))
    assert enabled.returncode == 0, enabled.stdout + enabled.stderr
    assert "Authentication Status: true" in _ctl(first, FINAL, "auth", "status").stdout
    assert json.loads(_patroni(FINAL, tools_env).stdout)["touched"] is True
    # The control: a Patroni without the password is refused now.
    assert _patroni(MOVING, tools_env, timeout_s=20).returncode != 0
