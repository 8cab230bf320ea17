"""etcd's access control as the program sets it up, on real etcd members started from the rendered files:
root by its client certificate, Patroni's user by password under its key prefix only, and Patroni 4's own
etcd client logging in through etcd's gateway with its nameless certificate."""

from __future__ import annotations

import dataclasses
import itertools
import json
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest

from config import ClusterConfig, parse
from operations.etcd import render_access, render_enable
from render.credentials import Credentials
from render.etcd import ETCDCTL_ARGS
from render.paths import ETCD_HEALTH_SCRIPT, ETCD_START_SCRIPT, PATRONI_ETCD_CERT, PATRONI_ETCD_KEY
from render.patroni import dcs_namespace, render_patroni
from tests.golden_util import FAKE_CREDS, remap, variant_raw
from tests.tools import docker_boxes
from tests.tools.conftest import ETCD_CA, etcd_files, local_endpoint
from tests.tools.docker_boxes import BLOCKS, ToolsEnv

pytestmark = pytest.mark.tools

# etcdctl reads a password from its standard input as one word: the generated ones are letters and digits.
CREDS = dataclasses.replace(FAKE_CREDS, etcd="EtcdAccess0123456789abcdefghijkl")
HOSTS = (51, 52, 53)
_CLIENTS = itertools.count()


def _config() -> ClusterConfig:
    raw: dict[str, Any] = variant_raw("dev")
    members = [{"name": f"etcd-{n}", "address": f"10.89.0.{n}"} for n in HOSTS]
    return parse(remap({**raw, "name": "pgha-access", "etcd": {**raw["etcd"], "members": members}}, BLOCKS["dev"]))


@pytest.fixture(scope="module")
def members(tools_env: ToolsEnv) -> Iterator[tuple[ClusterConfig, list[docker_boxes.Container]]]:
    cfg = _config()
    boxes = [docker_boxes.start(f"pgha-tools-access-{m.name}", ("bash", ETCD_START_SCRIPT), tools_env.network,
                                str(m.address), etcd_files(cfg, m)) for m in cfg.etcd.members]
    try:
        docker_boxes.wait_for("three healthy members", lambda: all(
            b.exec("bash", ETCD_HEALTH_SCRIPT).returncode == 0 for b in boxes), deadline_s=60)
        yield cfg, boxes
    finally:
        for box in boxes:
            docker_boxes.docker("rm", "-f", box.name, check=False)


def test_patroni_with_a_password_waits_on_an_etcd_without_access_control(
        members: tuple[ClusterConfig, list[docker_boxes.Container]], tools_env: ToolsEnv) -> None:
    # Why the access-control step runs before any Patroni starts: Patroni 4.0.7 takes etcd's "authentication
    # is not enabled" answer for an error and waits on etcd for ever. (The control, with access control on,
    # is the last test of this module.)
    cfg, boxes = members
    status = boxes[0].exec(*ETCDCTL_ARGS, local_endpoint(cfg.etcd.client_port), "auth", "status", check=True)
    assert "Authentication Status: false" in status.stdout
    result = patroni_client(cfg, tools_env, timeout_s=20)
    assert result.returncode == 124, result.stdout + result.stderr


def test_access_control_is_set_up_twice_alike_and_keeps_each_in_its_place(
        members: tuple[ClusterConfig, list[docker_boxes.Container]], tools_env: ToolsEnv) -> None:
    cfg, boxes = members
    first = boxes[0]
    local = local_endpoint(cfg.etcd.client_port)
    for run in (1, 2):  # a second run (a later deployment that changed the step) finds everything there
        result = docker_boxes.docker("exec", "-i", first.name, "bash", "-s",
                                     stdin=render_access(cfg, CREDS).encode(), check=False)
        assert result.returncode == 0, f"run {run}: {result.stdout}{result.stderr}"
        assert "access control on" in result.stdout
    root = first.exec(*ETCDCTL_ARGS, local, "auth", "status", check=True).stdout
    assert "Authentication Status: true" in root
    prefix = dcs_namespace(CREDS)
    assert first.exec(*ETCDCTL_ARGS, local, "put", f"{prefix}by-root", "x", check=True).stdout.strip() == "OK"

    # A client box holding what a PostgreSQL node holds: the CA, Patroni's nameless certificate, its password.
    client = docker_boxes.start("pgha-tools-access-client", network=tools_env.network,
                                files={"/tmp/ca.crt": ETCD_CA.cert, **ETCD_CA.patroni_etcd_files()})
    try:
        endpoint = f"--endpoints=https://{cfg.etcd.members[0].address}:{cfg.etcd.client_port}"
        tls = ("etcdctl", endpoint, "--cacert=/tmp/ca.crt", f"--cert={PATRONI_ETCD_CERT}", f"--key={PATRONI_ETCD_KEY}")
        login = {"ETCDCTL_USER": f"patroni:{CREDS.etcd}"}

        def said(*args: str, env: dict[str, str] | None = None) -> str:
            out = client.exec(*tls, *args, env=env)
            return f"rc={out.returncode} {out.stdout}{out.stderr}"

        assert said("put", f"{prefix}pgha-test", "by patroni", env=login).startswith("rc=0 OK")
        assert "permission denied" in said("put", "/elsewhere", "x", env=login)
        assert "permission denied" in said("get", f"{prefix}x", env={"ETCDCTL_USER": "patroni:wrong"}) or \
            "authentication failed" in said("get", f"{prefix}x", env={"ETCDCTL_USER": "patroni:wrong"})
        assert "permission denied" in said("member", "add", "intruder", "--peer-urls=https://10.0.0.1:2380",
                                           env=login)
        # Nameless and without a password, over gRPC: no user, no right.
        assert "permission denied" in said("put", f"{prefix}pgha-test", "anonymous")
        # The gateway (HTTP/JSON, Patroni's way in) refuses a certificate with a name: why Patroni's has none.
        named = ETCD_CA.sign("root", ["digital_signature", "client_auth"])
        client.put({"/tmp/named.crt": named[0], "/tmp/named.key": named[1]})
        gateway = client.exec("curl", "-s", "--cacert", "/tmp/ca.crt", "--cert", "/tmp/named.crt", "--key",
                              "/tmp/named.key", "-X", "POST", "-d", '{"key": "eA=="}',
                              f"https://{cfg.etcd.members[0].address}:{cfg.etcd.client_port}/v3/kv/range").stdout
        assert "CommonName of client sending a request against gateway will be ignored" in gateway, gateway
    finally:
        docker_boxes.docker("rm", "-f", client.name, check=False)


def test_patroni_logs_in_through_the_gateway_with_the_rendered_settings(
        members: tuple[ClusterConfig, list[docker_boxes.Container]], tools_env: ToolsEnv) -> None:
    cfg, boxes = members
    status = boxes[0].exec(*ETCDCTL_ARGS, local_endpoint(cfg.etcd.client_port), "auth", "status", check=True)
    assert "Authentication Status: true" in status.stdout, "the test above enabled access control"
    result = patroni_client(cfg, tools_env, timeout_s=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"touched": True,
                                                                  "members": [cfg.postgres.nodes[0].name]}


def test_a_rotation_keeps_every_patroni_logged_in_and_refuses_the_old_login_only_at_the_end(
        members: tuple[ClusterConfig, list[docker_boxes.Container]], tools_env: ToolsEnv) -> None:
    cfg, boxes = members
    first, nodes = boxes[0], len(cfg.postgres.nodes)
    rotated = cfg.model_copy(update={"rotate": cfg.rotate.model_copy(update={"etcd": 1})})
    new = dataclasses.replace(CREDS, etcd="RotatedEtcd0123456789abcdefghijk")
    namespace = dcs_namespace(CREDS)

    def run(script: str) -> subprocess.CompletedProcess[str]:
        return docker_boxes.docker("exec", "-i", first.name, "bash", "-s", stdin=script.encode(), check=False)

    def users() -> list[str]:
        return first.exec(*ETCDCTL_ARGS, local_endpoint(cfg.etcd.client_port), "user", "list",
                          check=True).stdout.split()

    # Before the nodes: the new user is made beside the old one, and a Patroni not yet reloaded still logs in
    # (etcd invalidated its token: it logs in again, with the old password).
    made = run(render_access(rotated, new))
    assert made.returncode == 0, made.stdout + made.stderr
    assert {"patroni", "patroni.1"} <= set(users())
    old_nodes = patroni_client(cfg, tools_env, timeout_s=60, nodes=nodes)
    assert old_nodes.returncode == 0, old_nodes.stdout + old_nodes.stderr
    # After the nodes, while their member keys still name the old user: the old user stays, and the step says
    # who is behind (the control: removed now, the Patroni above would be refused at its next login).
    early = run(render_enable(rotated, namespace, deadline_s=3))
    assert early.returncode == 1 and "still log in as an earlier etcd user" in early.stderr, early.stderr
    assert all(n.name in early.stderr for n in cfg.postgres.nodes) and "patroni" in users()
    # Every node reloaded (logs in as patroni.1 and says so in its tag): the old user goes.
    new_nodes = patroni_client(rotated, tools_env, timeout_s=60, creds=new, nodes=nodes)
    assert new_nodes.returncode == 0, new_nodes.stdout + new_nodes.stderr
    done = run(render_enable(rotated, namespace))
    assert done.returncode == 0 and "removed the etcd user patroni: every Patroni logs in as patroni.1" in \
        done.stdout, done.stdout + done.stderr
    assert "patroni" not in users() and "patroni.1" in users()
    # The old login is refused. Patroni 4.0.7 does not recognise etcd's gateway answer (the reason is under
    # `message`, where it reads `error`), so it does not exit: it waits on etcd, never getting in.
    refused = patroni_client(cfg, tools_env, timeout_s=15, env={"PGHA_LOG": "DEBUG"})
    said = refused.stdout + refused.stderr
    assert refused.returncode == 124 and '"POST /v3/auth/authenticate HTTP/1.1" 400' in said, said
    assert "waiting on etcd" in said and '"touched"' not in said, said
    again = run(render_enable(rotated, namespace))  # a rerun finds nothing to remove
    assert again.returncode == 0 and "removed" not in again.stdout, again.stdout + again.stderr


def patroni_client(cfg: ClusterConfig, tools_env: ToolsEnv, timeout_s: int, creds: Credentials = CREDS,
                   nodes: int = 1, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Patroni 4's own etcd client, from the rendered patroni.yml of the first `nodes` nodes (the files signed by
    the tools CA): each registers its node with the tags its configuration gives, as Patroni's loop does, then
    the cluster is read back; killed after `timeout_s` (exit 124)."""
    configs = {f"/etc/patroni/{n.name}.yml": render_patroni(cfg, n, creds) for n in cfg.postgres.nodes[:nodes]}
    files = {**configs, **ETCD_CA.node_files(cfg, cfg.postgres.nodes[0]), **ETCD_CA.patroni_etcd_files()}
    box = docker_boxes.start(f"pgha-tools-access-patroni-{next(_CLIENTS)}", network=tools_env.network, files=files)
    script = f"""
import json
from patroni.config import Config
from patroni.dcs import get_dcs
import logging, os
logging.basicConfig(level=os.environ.get("PGHA_LOG", "WARNING"))
for path in {sorted(configs)!r}:
    config = Config(path)
    dcs = get_dcs(config)
    touched = dcs.touch_member({{"conn_url": "postgres://pgha-tools", "state": "running", "role": "replica",
                                 "tags": config.get("tags") or {{}}}})
    assert touched, path
cluster = dcs.get_cluster()
print(json.dumps({{"touched": touched, "members": sorted(m.name for m in cluster.members)}}))
"""
    try:
        return box.exec("timeout", str(timeout_s), "python3", "-c", script, timeout=timeout_s + 30, env=env)
    finally:
        docker_boxes.docker("rm", "-f", box.name, check=False)
