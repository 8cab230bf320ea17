"""Fixtures for the tool tests: the node image, the private network, idle containers, etcd clusters."""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from config.models import ClusterConfig, Host
from render.etcd import ETCDCTL_ARGS, render_etcd, render_etcd_cluster, render_etcd_health, render_etcd_start
from render.paths import ETCD_CLUSTER_ENV, ETCD_CONFIG, ETCD_HEALTH_SCRIPT, ETCD_START_SCRIPT
from tests.golden_util import VARIANTS
from tests.tools import docker_boxes
from tests.tools.cluster_tls import ToolsCA
from tests.tools.docker_boxes import BLOCKS, NETWORK, SUBNET, BoxFactory, Clusters, ToolsEnv, variant_config


@pytest.fixture(scope="session")
def tools_env() -> Iterator[ToolsEnv]:
    """Node image built (or as given), leftovers of earlier runs removed, private network created."""
    docker_boxes.require_engine()
    docker_boxes.cleanup()
    image = docker_boxes.ensure_image()
    docker_boxes.docker(
        "network", "create", "--internal", "--label", docker_boxes.LABEL,
        "--subnet", str(SUBNET), "--ip-range", str(BLOCKS["dynamic"]), NETWORK,
    )  # fmt: skip
    try:
        yield ToolsEnv(image=image, network=NETWORK)
    finally:
        docker_boxes.cleanup()


@pytest.fixture
def boxes(tools_env: ToolsEnv) -> Iterator[BoxFactory]:
    """Start idle containers on the private network for one test; removed when the test ends."""
    started: list[docker_boxes.Container] = []

    def make(name: str, files: dict[str, str] | None = None) -> docker_boxes.Container:
        started.append(docker_boxes.start(f"pgha-tools-{name}", network=tools_env.network, files=files))
        return started[-1]

    yield make
    for container in started:
        docker_boxes.docker("rm", "-f", container.name, check=False)


# One CA for every etcd member the tool tests start (as one cluster's CA signs its members').
ETCD_CA = ToolsCA("tools etcd CA")
# pgha's etcdctl as the program runs it on a member (root's certificate), and a local endpoint for it.
ETCDCTL = ETCDCTL_ARGS


def local_endpoint(port: int) -> str:
    return f"--endpoints=https://127.0.0.1:{port}"


def etcd_files(cfg: ClusterConfig, member: Host) -> dict[str, str]:
    """Every file the program installs for etcd member `member`, its certificates signed by ETCD_CA."""
    return {ETCD_CONFIG: render_etcd(cfg, member), ETCD_CLUSTER_ENV: render_etcd_cluster(cfg, member),
            ETCD_START_SCRIPT: render_etcd_start(cfg), ETCD_HEALTH_SCRIPT: render_etcd_health(cfg),
            **ETCD_CA.etcd_files(member)}


def _until_cluster_healthy(variant: str, members: list[docker_boxes.Container], port: int) -> None:
    """Until every member of `members` published itself and is healthy; failing with what they said."""
    def healthy() -> bool:
        # A member shows its name and client URLs only once it published them; until then
        # `endpoint health --cluster` (which asks every listed client URL) would skip it.
        endpoint = local_endpoint(port)
        listed = members[0].exec(*ETCDCTL, endpoint, "member", "list", "-w", "json")
        if listed.returncode != 0:
            return False
        published = [m for m in json.loads(listed.stdout)["members"] if m.get("name") and m.get("clientURLs")]
        return (len(published) == len(members)
                and members[0].exec(*ETCDCTL, endpoint, "endpoint", "health", "--cluster").returncode == 0)

    docker_boxes.wait_for_etcd(f"{variant}: every etcd member published and healthy", healthy, members)


@pytest.fixture(scope="session")
def etcd_clusters(tools_env: ToolsEnv) -> Iterator[Clusters]:
    """Every variant's etcd members running from their rendered files, each cluster healthy."""
    clusters: Clusters = {}
    try:
        # One variant's cluster at a time, each healthy before the next starts: eleven members forming at
        # once on two cores, every peer message over TLS, is not what a deployment does (it starts the
        # members of one cluster only).
        for variant in VARIANTS:
            cfg = variant_config(variant)
            starts = [{"name": f"pgha-tools-{variant}-{member.name}", "cmd": ("bash", ETCD_START_SCRIPT),
                       "network": tools_env.network, "ip": str(member.address), "files": etcd_files(cfg, member)}
                      for member in cfg.etcd.members]
            with ThreadPoolExecutor(max_workers=len(starts)) as pool:
                clusters[variant] = list(pool.map(lambda kwargs: docker_boxes.start(**kwargs), starts))
            _until_cluster_healthy(variant, clusters[variant], cfg.etcd.client_port)
    except BaseException:
        for members in clusters.values():
            for member in members:
                docker_boxes.docker("rm", "-f", member.name, check=False)
        raise
    yield clusters
    for members in clusters.values():
        for member in members:
            docker_boxes.docker("rm", "-f", member.name, check=False)
