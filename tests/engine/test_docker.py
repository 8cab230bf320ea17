"""The docker providers of the local engine on a real engine: a first deployment, then one later deployment
per kind of change, each plan and its result checked against what pulumi-docker does (ENGINE.md).

The tests run in file order on one stack; each deploys the self-test program with one input changed.
"""

from __future__ import annotations

import os
import secrets
import socket
import string
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import pulumi
import pulumi_docker as pdocker
import pulumi_random as prandom
import pytest
from docker import errors as docker_errors

from local_engine import Stack, UpdateFailedError
from local_engine.docker_engine import remove_labelled
from local_engine.wire import RUN_LABEL
from tests.support.docker import require_engine

pytestmark = pytest.mark.e2e

SUITE_LABEL = "pgha.local-engine.suite"
SUITE = f"{SUITE_LABEL}=docker-selftest"
SUBNET = "10.250.77.0/24"
IMAGE = "pgha-local-engine-selftest:latest"
SERVER_NAME = "pgha-le-selftest-server"
SERVER = """#!/usr/bin/perl
use IO::Socket::INET;
my $s = IO::Socket::INET->new(LocalPort => 8080, Listen => 5, ReuseAddr => 1) or die "listen: $!";
open my $f, '<', '/srv/selftest/greeting.txt' or die "open: $!";
my $text = do { local $/; <$f> };
while (my $c = $s->accept) { print $c "$ENV{GREETING}\\n$text"; close $c; }
"""
HEALTH = ["CMD", "perl", "-MIO::Socket::INET", "-e", "IO::Socket::INET->new(PeerAddr => q(127.0.0.1:8080)) or exit 1"]
DEFAULTS: dict[str, Any] = {"payload": "payload\n", "restart": "unless-stopped", "interval": "1s",
                            "start_period": "120s", "scratch": True}


def selftest_program(**changes: Any) -> Callable[[], None]:
    """Network, volumes, password, image, and a container with uploads, env, port and healthcheck."""
    knobs = {**DEFAULTS, **changes}

    def program() -> None:
        cfg = pulumi.Config("selftest")
        labels = [pdocker.NetworkLabelArgs(label="role", value="t")]
        net = pdocker.Network("net", name="pgha-le-selftest", labels=labels, ipam_configs=[
            pdocker.NetworkIpamConfigArgs(subnet=SUBNET, gateway="10.250.77.1")])
        vol = pdocker.Volume("vol", name="pgha-le-selftest-data")
        if knobs["scratch"]:
            pdocker.Volume("scratch", name="pgha-le-selftest-scratch")
        password = prandom.RandomPassword("password", length=24, special=True, override_special="-_",
                                          min_numeric=2, min_upper=2)
        image = pdocker.Image("image", image_name=IMAGE, skip_push=True, build=pdocker.DockerBuildArgs(
            context="ctx", builder_version=pdocker.BuilderVersion.BUILDER_V1))
        server = pdocker.Container(
            "server", name=SERVER_NAME, image=image.image_name, command=["/srv/selftest/serve"],
            envs=[password.result.apply(lambda p: f"APP_PASSWORD={p}"), f"GREETING={cfg.require('greeting')}"],
            labels=[pdocker.ContainerLabelArgs(label="role", value="server")],
            networks_advanced=[pdocker.ContainerNetworksAdvancedArgs(name=net.name, ipv4_address="10.250.77.10",
                                                                     aliases=["server"])],
            volumes=[pdocker.ContainerVolumeArgs(volume_name=vol.name, container_path="/data")],
            ports=[pdocker.ContainerPortArgs(internal=8080, ip="127.0.0.1")],
            uploads=[pdocker.ContainerUploadArgs(file="/srv/selftest/serve", content=SERVER, executable=True),
                     pdocker.ContainerUploadArgs(file="/srv/selftest/greeting.txt", permissions="0640",
                                                 content=pulumi.Output.secret(knobs["payload"]))],
            healthcheck=pdocker.ContainerHealthcheckArgs(tests=HEALTH, interval=knobs["interval"], timeout="2s",
                                                         retries=3, start_period=knobs["start_period"]),
            restart=knobs["restart"], destroy_grace_seconds=5, wait=True, wait_timeout=60)
        pulumi.export("password", password.result)
        pulumi.export("server", {"name": server.name, "ports": server.ports, "networks": server.network_datas})
        pulumi.export("limits", cfg.require_object("limits"))

    return program


@dataclass
class Bystanders:
    """Objects made outside the engine (same suite label, no run label) that must survive."""

    container: str
    volume: str


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    require_engine()
    remove_labelled(SUITE)  # leftovers of an interrupted earlier self-test
    yield docker.from_env()
    remove_labelled(SUITE)


@pytest.fixture(scope="module")
def bystanders(client: docker.DockerClient) -> Iterator[Bystanders]:
    suffix = secrets.token_hex(3)
    labels = {SUITE_LABEL: "docker-selftest"}
    volume = client.volumes.create(f"pgha-le-bystander-{suffix}", labels=labels)
    container = client.containers.run("debian:trixie-slim", ["sleep", "infinity"], detach=True,
                                      name=f"pgha-le-bystander-{suffix}", labels=labels)
    yield Bystanders(container.id, volume.name)
    container.remove(force=True, v=True)
    volume.remove(force=True)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("selftest")
    (root / "ctx").mkdir()
    (root / "ctx" / "Dockerfile").write_text("FROM debian:trixie-slim\nCOPY motd /etc/motd\n"
                                             "RUN mkdir -p /srv/selftest /data\n")
    (root / "ctx" / "motd").write_text("first\n")
    (root / "Pulumi.dev.yaml").write_text(
        "config:\n  selftest:greeting: hello-e2e\n  selftest:limits:\n    cpus: 2\n    names: [a, b]\n")
    return root


@pytest.fixture(scope="module")
def stack(client: docker.DockerClient, bystanders: Bystanders, workdir: Path) -> Iterator[Stack]:
    made = Stack("dev", workdir, project="selftest", labels={SUITE_LABEL: "docker-selftest"})
    yield made
    if made.snapshot:
        made.destroy()


def _exec(client: docker.DockerClient, name: str, *command: str) -> str:
    code, output = client.containers.get(name).exec_run(list(command))
    assert code == 0, output
    return output.decode()


def _run_objects(client: docker.DockerClient, run_id: str) -> set[str]:
    label = {"label": [f"{RUN_LABEL}={run_id}"]}
    return ({c["Id"] for c in client.api.containers(all=True, filters=label)}
            | {v["Name"] for v in client.api.volumes(filters=label).get("Volumes") or []}
            | {n["Id"] for n in client.api.networks(filters=label)})


def _reply(port: int) -> str:
    deadline = time.monotonic() + 15
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
                return conn.makefile().read()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


# ------------------------------------------------------------------------------------------ first deployment


def test_first_deployment_creates_everything_the_plan_said(client: docker.DockerClient, stack: Stack) -> None:
    update = stack.up(selftest_program())
    assert update.plan.ops() == update.steps.ops() == dict.fromkeys(
        ["net", "vol", "scratch", "password", "image", "server"], "create")
    attrs = client.containers.get(SERVER_NAME).attrs
    assert attrs["State"]["Running"] and attrs["State"]["Health"]["Status"] == "healthy"
    assert attrs["Config"]["Labels"]["role"] == "server" and attrs["Config"]["Labels"][RUN_LABEL] == stack.run_id
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert attrs["NetworkSettings"]["Networks"]["pgha-le-selftest"]["IPAddress"] == "10.250.77.10"
    assert "server" in attrs["NetworkSettings"]["Networks"]["pgha-le-selftest"]["Aliases"]
    assert [m["Name"] for m in attrs["Mounts"]] == ["pgha-le-selftest-data"]
    assert _exec(client, SERVER_NAME, "cat", "/srv/selftest/greeting.txt") == "payload\n"
    for path, mode in (("/srv/selftest/greeting.txt", "640"), ("/srv/selftest/serve", "744")):
        assert _exec(client, SERVER_NAME, "stat", "-c", "%a %u %g", path).split() == [mode, "0", "0"]
    (port,) = update.outputs["server"]["ports"]
    assert port["ip"] == "127.0.0.1" and port["internal"] == 8080 and port["external"] > 0
    assert _reply(port["external"]) == "hello-e2e\npayload\n"
    assert update.outputs["limits"] == {"cpus": 2, "names": ["a", "b"]}
    assert update.outputs["server"]["networks"][0]["ipAddress"] == "10.250.77.10"


def test_secrets_are_secret_in_outputs_and_state(client: docker.DockerClient, stack: Stack) -> None:
    password = stack.outputs["password"]
    assert "password" in stack.secret_outputs and "server" not in stack.secret_outputs
    assert len(password) == 24 and set(password) <= set(string.ascii_letters + string.digits + "-_")
    assert sum(c.isdigit() for c in password) >= 2 and sum(c.isupper() for c in password) >= 2
    assert f"APP_PASSWORD={password}" in client.containers.get(SERVER_NAME).attrs["Config"]["Env"]
    server = stack.state_of("server")
    # One secret upload makes the whole uploads list secret, and the env that holds the password.
    assert server.outputs["uploads"]["4dabf18193072939515e22adb298388d"] and server.outputs["envs"]["value"]
    assert stack.state_of("image").outputs["repoDigest"].startswith("sha256:"), "skip_push: the local image id"


# ------------------------------------------------------------------------------------------ later deployments


def test_a_non_canonical_duration_shows_one_state_only_update_after_create(client: docker.DockerClient,
                                                                           stack: Stack) -> None:
    before = client.containers.get(SERVER_NAME).attrs
    update = stack.up(selftest_program())  # the same program: start_period "120s" reads back as "2m0s"
    assert update.plan.changes() == update.steps.changes() == {"server": "update"}
    assert update.plan.of("server").keys == ("healthcheck",) and "state only" in update.plan.of("server").why
    assert client.containers.get(SERVER_NAME).attrs["Id"] == before["Id"] and update.runs == []
    assert stack.up(selftest_program()).plan.changes() == {}, "the update stored the value as written"


def test_a_health_check_change_is_an_update_the_running_container_never_sees(client: docker.DockerClient,
                                                                             stack: Stack) -> None:
    before = client.containers.get(SERVER_NAME).attrs
    update = stack.up(selftest_program(interval="3s"))
    assert update.plan.changes() == update.steps.changes() == {"server": "update"}
    after = client.containers.get(SERVER_NAME).attrs
    assert after["Id"] == before["Id"]
    assert after["Config"]["Healthcheck"]["Interval"] == before["Config"]["Healthcheck"]["Interval"] == 1_000_000_000


def test_a_restart_policy_change_updates_the_container_in_place(client: docker.DockerClient, stack: Stack) -> None:
    before = client.containers.get(SERVER_NAME).attrs
    update = stack.up(selftest_program(interval="3s", restart="always"))
    assert update.plan.changes() == update.steps.changes() == {"server": "update"}
    after = client.containers.get(SERVER_NAME).attrs
    assert after["Id"] == before["Id"] and after["State"]["StartedAt"] == before["State"]["StartedAt"]
    assert after["HostConfig"]["RestartPolicy"]["Name"] == "always"


def test_an_uploaded_file_change_replaces_the_container_delete_before_replace(client: docker.DockerClient,
                                                                              stack: Stack) -> None:
    old = client.containers.get(SERVER_NAME)
    old.exec_run(["sh", "-c", "echo kept > /data/marker"])
    update = stack.up(selftest_program(interval="3s", restart="always", payload="changed\n"))
    step = update.plan.of("server")
    assert update.plan.changes() == update.steps.changes() == {"server": "replace"}
    assert step.delete_before_replace and step.replace_keys == ("uploads",)
    new = client.containers.get(SERVER_NAME)
    assert new.id != old.id
    with pytest.raises(docker_errors.NotFound):
        client.containers.get(old.id)
    assert _exec(client, SERVER_NAME, "cat", "/srv/selftest/greeting.txt") == "changed\n"
    assert _exec(client, SERVER_NAME, "cat", "/data/marker") == "kept\n", "the volume outlives the container"
    # The new container's create read the health check back in canonical form: one more no-op update.
    again = stack.up(selftest_program(interval="3s", restart="always", payload="changed\n"))
    assert again.steps.changes() == {"server": "update"} and again.plan.of("server").keys == ("healthcheck",)


def test_an_edited_build_context_rebuilds_the_image_and_keeps_the_container(client: docker.DockerClient,
                                                                            stack: Stack, workdir: Path) -> None:
    old_image = client.images.get(IMAGE).id
    container = client.containers.get(SERVER_NAME).id
    (workdir / "ctx" / "motd").write_text("second\n")
    update = stack.up(selftest_program(interval="3s", restart="always", payload="changed\n"))
    assert update.plan.changes() == update.steps.changes() == {"image": "update"}, update.plan.render()
    assert update.plan.of("image").keys == ("build",)
    assert client.images.get(IMAGE).id != old_image
    # The image name did not change, so neither did the container's input: it runs the old image still.
    assert client.containers.get(SERVER_NAME).id == container
    assert _exec(client, SERVER_NAME, "cat", "/etc/motd") == "first\n"


def test_a_resource_no_longer_declared_is_deleted(client: docker.DockerClient, stack: Stack) -> None:
    update = stack.up(selftest_program(interval="3s", restart="always", payload="changed\n", scratch=False))
    assert update.plan.changes() == update.steps.changes() == {"scratch": "delete"}
    with pytest.raises(docker_errors.NotFound):
        client.volumes.get("pgha-le-selftest-scratch")


def test_a_leftover_volume_of_the_same_name_is_adopted_silently(client: docker.DockerClient, workdir: Path) -> None:
    name = f"pgha-le-leftover-{secrets.token_hex(3)}"
    leftover = client.volumes.create(name, labels={SUITE_LABEL: "docker-selftest"})
    other = Stack("adopt", workdir, project="selftest", stack_file=workdir / "Pulumi.dev.yaml",
                  labels={SUITE_LABEL: "docker-selftest"}, log=lambda text: None)
    update = other.up(lambda: pdocker.Volume("adopted", name=name))
    assert update.steps.ops() == {"adopted": "create"}
    assert other.state_of("adopted").id == leftover.name == name, "VolumeCreate returned the existing volume"
    other.destroy()
    with pytest.raises(docker_errors.NotFound):
        client.volumes.get(name)


# ------------------------------------------------------------------------------------------ failures, destroy


def _failing_program(kind: str) -> None:
    net = pdocker.Network("fail-net", name="pgha-le-selftest-fail", ipam_configs=[
        pdocker.NetworkIpamConfigArgs(subnet="10.250.79.0/24")])
    after = pulumi.ResourceOptions(depends_on=[net])
    if kind == "type":
        pulumi.CustomResource("acme:index/gadget:Gadget", "gadget", {"size": 1}, opts=after)
    elif kind == "input":
        pdocker.Container("bad", image="debian:trixie-slim", cpu_shares=512, gpus="all", opts=after)
    elif kind == "builder":
        pdocker.Image("kit", image_name="x:y", skip_push=True, build=pdocker.DockerBuildArgs(context="ctx"),
                      opts=after)
    else:
        pdocker.Container("sick", name="pgha-le-selftest-sick", image="debian:trixie-slim",
                          command=["sh", "-c", "echo booting; exec sleep infinity"],
                          healthcheck=pdocker.ContainerHealthcheckArgs(tests=["CMD", "false"], interval="1s",
                                                                       retries=1),
                          wait=True, wait_timeout=4, opts=after)


@pytest.mark.parametrize(("kind", "expected", "left"), [
    ("type", ["preview", "acme:index/gadget:Gadget", "'gadget'"], []),
    ("input", ["preview", "docker:index/container:Container 'bad'", "gpus"], []),
    ("builder", ["preview", "builderVersion: unset (BuildKit)"], []),
    ("health", ["'sick'", "not healthy after 4s", "booting"], ["fail-net", "sick"]),
])
def test_a_failed_deployment_says_why_and_keeps_what_it_made(client: docker.DockerClient, workdir: Path,
                                                             kind: str, expected: list[str], left: list[str]) -> None:
    failing = Stack("fail", workdir, project="selftest", stack_file=workdir / "Pulumi.dev.yaml",
                    labels={SUITE_LABEL: "docker-selftest"}, log=lambda text: None)
    with pytest.raises(UpdateFailedError) as caught:
        failing.up(lambda: _failing_program(kind))
    message = str(caught.value)
    assert all(text in message for text in expected), message
    # What the preview refuses, nothing is made of. As with pulumi, a failed update keeps what it made in
    # the state (a half-made container with init errors), and destroy removes it.
    assert [s.name for s in failing.resources() if s.custom] == left
    if kind == "health":
        assert failing.state_of("sick").init_errors
        retry = failing.preview(lambda: _failing_program(kind))
        assert retry.of("sick").op == "update" and "init errors" in retry.of("sick").why
    failing.destroy()
    assert _run_objects(client, failing.run_id) == set()


def test_remove_labelled_clears_leftovers_and_spares_the_rest(client: docker.DockerClient,
                                                              bystanders: Bystanders) -> None:
    run_id = f"selftest-leftover-{secrets.token_hex(3)}"
    labels = {RUN_LABEL: run_id, SUITE_LABEL: "docker-selftest"}
    client.volumes.create(f"pgha-le-leftover-{run_id}", labels=labels)
    client.networks.create(f"pgha-le-leftover-{run_id}", labels=labels)
    removed = remove_labelled(f"{RUN_LABEL}={run_id}")
    assert sorted(removed) == [f"network pgha-le-leftover-{run_id}", f"volume pgha-le-leftover-{run_id}"]
    assert _run_objects(client, run_id) == set()
    client.containers.get(bystanders.container)
    client.volumes.get(bystanders.volume)


def test_destroy_deletes_dependents_first_and_leaves_the_image(client: docker.DockerClient, stack: Stack,
                                                              bystanders: Bystanders) -> None:
    made = _run_objects(client, stack.run_id)
    assert len(made) == 3, made  # the network, the data volume, the container
    update = stack.destroy()
    order = [s.name for s in update.steps.steps if s.custom]
    assert order.index("server") < min(order.index("net"), order.index("vol"), order.index("image"))
    assert stack.snapshot == {} and _run_objects(client, stack.run_id) == set()
    client.images.get(IMAGE)  # pulumi-docker's Image delete does nothing
    client.images.remove(IMAGE, force=True)
    assert client.containers.get(bystanders.container).status == "running"
    client.volumes.get(bystanders.volume)
    assert os.path.exists(stack.workdir / "ctx" / "Dockerfile")
