"""Self-tests of the real-deployment harness: a throwaway program deployed on the real engine."""

from __future__ import annotations

import secrets
import socket
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import pulumi
import pulumi_docker as pdocker
import pulumi_random as prandom
import pytest
from docker import errors as docker_errors

from . import RUN_LABEL, Deployment, HarnessError, cleanup_leftovers, deploy, docker_client, require_engine

pytestmark = pytest.mark.e2e

SUITE_LABEL = "pgha.e2e.suite"
SUITE = f"{SUITE_LABEL}=harness-selftest"
SUBNET = "10.250.77.0/24"
IMAGE = "pgha-e2e-selftest:latest"
SERVER = """#!/usr/bin/perl
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!";
open my $f, '<', '/srv/harness/greeting.txt' or die "open: $!";
my $text = do { local $/; <$f> };
while (my $c = $s->accept) { print $c "$ENV{GREETING}\\n$text"; close $c; }
"""
HEALTH = ["CMD", "perl", "-MIO::Socket::INET", "-e", "IO::Socket::INET->new(PeerAddr => q(127.0.0.1:8080)) or exit 1"]


@dataclass
class Bystanders:
    """Objects made outside the harness (same suite label, no run label) that must survive."""

    container: str
    volume: str


def selftest_program() -> None:
    """Network, volume, password, image, and a container with uploads, env, port and healthcheck."""
    cfg = pulumi.Config("selftest")
    net = pdocker.Network("net", name="pgha-e2e-selftest", ipam_configs=[
        pdocker.NetworkIpamConfigArgs(subnet=SUBNET)], labels=[pdocker.NetworkLabelArgs(label="role", value="t")])
    vol = pdocker.Volume("vol", name="pgha-e2e-selftest-data")
    password = prandom.RandomPassword("password", length=24, special=True, override_special="-_",
                                      min_numeric=2, min_upper=2)
    image = pdocker.Image("image", image_name=IMAGE, skip_push=True, build=pdocker.DockerBuildArgs(context="ctx"))
    server = pdocker.Container(
        "server", name="pgha-e2e-selftest-server", image=image.image_name, command=["/srv/harness/serve"],
        envs=[password.result.apply(lambda p: f"APP_PASSWORD={p}"), f"GREETING={cfg.require('greeting')}"],
        labels=[pdocker.ContainerLabelArgs(label="role", value="server")],
        networks_advanced=[pdocker.ContainerNetworksAdvancedArgs(name=net.name, ipv4_address="10.250.77.10",
                                                                 aliases=["server"])],
        volumes=[pdocker.ContainerVolumeArgs(volume_name=vol.name, container_path="/data")],
        ports=[pdocker.ContainerPortArgs(internal=8080, ip="127.0.0.1")],
        uploads=[pdocker.ContainerUploadArgs(file="/srv/harness/serve", content=SERVER, executable=True),
                 pdocker.ContainerUploadArgs(file="/srv/harness/greeting.txt", permissions="0640",
                                             content=pulumi.Output.secret("payload\n"))],
        healthcheck=pdocker.ContainerHealthcheckArgs(tests=HEALTH, interval="1s", timeout="2s", retries=3),
        restart="unless-stopped", wait=True, wait_timeout=60)
    pulumi.export("password", password.result)
    pulumi.export("server", {"name": server.name, "ports": server.ports, "networks": server.network_datas})
    pulumi.export("limits", cfg.require_object("limits"))


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    require_engine()
    cleanup_leftovers(label=SUITE)  # leftovers of an interrupted earlier self-test
    yield docker_client()
    cleanup_leftovers(label=SUITE)


@pytest.fixture(scope="module")
def bystanders(client: docker.DockerClient) -> Iterator[Bystanders]:
    suffix = secrets.token_hex(3)
    labels = {SUITE_LABEL: "harness-selftest"}
    volume = client.volumes.create(f"pgha-e2e-bystander-{suffix}", labels=labels)
    container = client.containers.run("debian:trixie-slim", ["sleep", "infinity"], detach=True,
                                      name=f"pgha-e2e-bystander-{suffix}", labels=labels)
    yield Bystanders(container.id, volume.name)
    container.remove(force=True, v=True)
    volume.remove(force=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selftest")
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text("FROM debian:trixie-slim\nRUN mkdir -p /srv/harness /data\n")
    (root / "Pulumi.dev.yaml").write_text(
        "config:\n  selftest:greeting: hello-e2e\n  selftest:limits:\n    cpus: 2\n    names: [a, b]\n")
    return root


@pytest.fixture(scope="module")
def deployment(client: docker.DockerClient, bystanders: Bystanders, workdir: Path) -> Iterator[Deployment]:
    started = time.monotonic()
    result = deploy(workdir / "Pulumi.dev.yaml", selftest_program, project="selftest",
                    extra_labels={SUITE_LABEL: "harness-selftest"})
    print(f"deployed in {time.monotonic() - started:.1f}s")
    yield result
    result.destroy(remove_images=True)


def _run_objects(client: docker.DockerClient, run_id: str) -> set[str]:
    label = {"label": [f"{RUN_LABEL}={run_id}"]}
    return ({c["Id"] for c in client.api.containers(all=True, filters=label)}
            | {v["Name"] for v in client.api.volumes(filters=label).get("Volumes") or []}
            | {n["Id"] for n in client.api.networks(filters=label)})


def _exec(client: docker.DockerClient, name: str, *command: str) -> str:
    code, output = client.containers.get(name).exec_run(list(command))
    assert code == 0, output
    return output.decode()


def test_container_running_healthy_and_labeled(client: docker.DockerClient, deployment: Deployment) -> None:
    attrs = client.containers.get("pgha-e2e-selftest-server").attrs
    assert attrs["State"]["Running"] and attrs["State"]["Health"]["Status"] == "healthy"
    assert attrs["Config"]["Labels"]["role"] == "server"
    assert attrs["Config"]["Labels"][RUN_LABEL] == deployment.run_id
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["NetworkSettings"]["Networks"]["pgha-e2e-selftest"]["IPAddress"] == "10.250.77.10"
    assert "server" in attrs["NetworkSettings"]["Networks"]["pgha-e2e-selftest"]["Aliases"]
    assert [m["Name"] for m in attrs["Mounts"]] == ["pgha-e2e-selftest-data"]


def test_uploads_have_content_mode_and_root_owner(client: docker.DockerClient, deployment: Deployment) -> None:
    name = "pgha-e2e-selftest-server"
    assert _exec(client, name, "cat", "/srv/harness/greeting.txt") == "payload\n"
    assert _exec(client, name, "cat", "/srv/harness/serve") == SERVER
    assert _exec(client, name, "stat", "-c", "%a %u %g", "/srv/harness/greeting.txt").split() == ["640", "0", "0"]
    assert _exec(client, name, "stat", "-c", "%a %u %g", "/srv/harness/serve").split() == ["744", "0", "0"]


def test_env_and_published_port(deployment: Deployment) -> None:
    (port,) = deployment.outputs["server"]["ports"]
    assert port["ip"] == "127.0.0.1" and port["internal"] == 8080 and port["external"] > 0
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port["external"]), timeout=5) as conn:
                reply = conn.makefile().read()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert reply == "hello-e2e\npayload\n"


def test_password_is_random_and_secret(client: docker.DockerClient, deployment: Deployment) -> None:
    password = deployment.outputs["password"]
    assert "password" in deployment.secret_outputs and "server" not in deployment.secret_outputs
    assert len(password) == 24 and set(password) <= set(string.ascii_letters + string.digits + "-_")
    assert sum(c.isdigit() for c in password) >= 2 and sum(c.isupper() for c in password) >= 2
    env = client.containers.get("pgha-e2e-selftest-server").attrs["Config"]["Env"]
    assert f"APP_PASSWORD={password}" in env


def test_network_subnet_and_config(client: docker.DockerClient, deployment: Deployment) -> None:
    attrs = client.networks.get("pgha-e2e-selftest").attrs
    assert [c["Subnet"] for c in attrs["IPAM"]["Config"]] == [SUBNET]
    assert attrs["Labels"] == {"role": "t", RUN_LABEL: deployment.run_id, SUITE_LABEL: "harness-selftest"}
    assert deployment.outputs["limits"] == {"cpus": 2, "names": ["a", "b"]}
    assert deployment.outputs["server"]["networks"][0]["ipAddress"] == "10.250.77.10"


def _failing_program(kind: str) -> None:
    net = pdocker.Network("fail-net", name="pgha-e2e-selftest-fail", ipam_configs=[
        pdocker.NetworkIpamConfigArgs(subnet="10.250.79.0/24")])
    after = pulumi.ResourceOptions(depends_on=[net])
    if kind == "type":
        pulumi.CustomResource("acme:index/gadget:Gadget", "gadget", {"size": 1}, opts=after)
    elif kind == "input":
        pdocker.Container("bad", image="debian:trixie-slim", cpu_shares=512, opts=after)
    else:
        pdocker.Container("sick", name="pgha-e2e-selftest-sick", image="debian:trixie-slim",
                          command=["sh", "-c", "echo booting; exec sleep infinity"],
                          healthcheck=pdocker.ContainerHealthcheckArgs(tests=["CMD", "false"], interval="1s",
                                                                       retries=1),
                          wait=True, wait_timeout=4, opts=after)


@pytest.mark.parametrize(("kind", "expected"), [
    ("type", ["acme:index/gadget:Gadget", "'gadget'"]),
    ("input", ["docker:index/container:Container 'bad'", "cpuShares"]),
    ("health", ["'sick'", "not healthy after 4s", "booting"]),
])
def test_failures_raise_and_leave_nothing(client: docker.DockerClient, deployment: Deployment, workdir: Path,
                                          kind: str, expected: list[str]) -> None:
    run_id = f"selftest-fail-{secrets.token_hex(3)}"
    with pytest.raises(HarnessError) as caught:
        deploy(workdir / "Pulumi.dev.yaml", lambda: _failing_program(kind), project="selftest", run_id=run_id,
               extra_labels={SUITE_LABEL: "harness-selftest"})
    message = str(caught.value)
    assert all(text in message for text in expected), message
    assert "everything created was removed" in message
    assert _run_objects(client, run_id) == set()


def test_cleanup_leftovers_by_run_label(client: docker.DockerClient, bystanders: Bystanders) -> None:
    run_id = f"selftest-leftover-{secrets.token_hex(3)}"
    labels = {RUN_LABEL: run_id, SUITE_LABEL: "harness-selftest"}
    client.volumes.create(f"pgha-e2e-leftover-{run_id}", labels=labels)
    client.networks.create(f"pgha-e2e-leftover-{run_id}", labels=labels)
    removed = cleanup_leftovers(label=f"{RUN_LABEL}={run_id}")
    assert sorted(removed) == [f"network pgha-e2e-leftover-{run_id}", f"volume pgha-e2e-leftover-{run_id}"]
    assert _run_objects(client, run_id) == set()
    client.containers.get(bystanders.container)
    client.volumes.get(bystanders.volume)


def test_destroy_removes_exactly_what_was_created(client: docker.DockerClient, deployment: Deployment,
                                                  bystanders: Bystanders) -> None:
    logged = {r.docker_id for r in deployment.resources if r.kind in ("container", "volume", "network")}
    assert [r.type for r in deployment.resources if r.kind != "random"].count("docker:index/container:Container") == 1
    assert _run_objects(client, deployment.run_id) == logged and len(logged) == 3
    removed = deployment.destroy(remove_images=True)
    assert {r.docker_id for r in removed if r.kind != "random"} == logged | {
        r.docker_id for r in deployment.resources if r.kind == "image"}
    assert _run_objects(client, deployment.run_id) == set()
    with pytest.raises(docker_errors.ImageNotFound):
        client.images.get(IMAGE)
    client.images.get("debian:trixie-slim")
    assert client.containers.get(bystanders.container).status == "running"
    client.volumes.get(bystanders.volume)

