"""The guards the docker target runs against the real docker CLI and engine: the volume guard before it creates a
volume, and the condition a step runs under in a container that may not exist or not run."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest

from render.guards import render_volume_guard
from targets.docker import _absent, _exec_unless, _stopped
from tests.tools import docker_boxes
from tests.tools.docker_boxes import ToolsEnv

pytestmark = pytest.mark.tools
CLUSTER = "pgha-guard-test"


@pytest.fixture
def volume(tools_env: ToolsEnv) -> Iterator[str]:
    name = f"pgha-guard-{uuid.uuid4().hex[:8]}"
    yield name
    docker_boxes.docker("rm", "-f", f"{name}-user", check=False)
    docker_boxes.docker("volume", "rm", "-f", name, check=False)


def guard(volume: str, adopt: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["/bin/sh", "-c", render_volume_guard(volume, CLUSTER, adopt)], capture_output=True,
                          text=True, timeout=60, check=False)


def test_a_new_volume_passes_and_a_leftover_is_refused_unless_adopted(volume: str) -> None:
    assert guard(volume).returncode == 0, "nothing there yet: the provider may create it"
    docker_boxes.docker("volume", "create", "--label", docker_boxes.LABEL, volume)
    refused = guard(volume)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        f"docker volume {volume} already exists: a new deployment does not adopt it, it may hold the data of "
        f"another deployment; remove it (docker volume rm {volume}) or set pgha:adopt_existing_data: true")
    adopted = guard(volume, adopt=True)
    assert adopted.returncode == 0 and "adopting the existing volume" in adopted.stdout


@pytest.mark.parametrize(("cluster", "passes"), [(CLUSTER, True), ("another-cluster", False)])
def test_a_volume_in_use_passes_only_when_this_cluster_uses_it(volume: str, tools_env: ToolsEnv, cluster: str,
                                                               passes: bool) -> None:
    docker_boxes.docker("volume", "create", "--label", docker_boxes.LABEL, volume)
    docker_boxes.docker("create", "--name", f"{volume}-user", "--label", docker_boxes.LABEL, "--label",
                   f"pgha.cluster={cluster}", "-v", f"{volume}:/data", tools_env.image, "true")
    result = guard(volume)
    assert (result.returncode == 0) is passes, result
    if not passes:
        assert f"(used by {volume}-user):" in result.stderr


def test_a_node_step_runs_in_a_running_container_and_skips_one_absent_or_down(tools_env: ToolsEnv) -> None:
    name = f"pgha-guard-{uuid.uuid4().hex[:8]}"
    step = _exec_unless(name, (_absent(name), "absent"), (_stopped(name), "down"))

    def run() -> str:
        done = subprocess.run(["/bin/bash", "-c", step], input="echo ran in $HOSTNAME", capture_output=True, text=True,
                              timeout=60, check=True)
        return done.stdout.strip()

    try:
        assert run() == "absent"
        box = docker_boxes.start(name)
        assert run().startswith("ran in "), "a running container runs the step (the control)"
        docker_boxes.docker("kill", box.name)
        assert run() == "down"
    finally:
        docker_boxes.docker("rm", "-f", name, check=False)
