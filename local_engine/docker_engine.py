"""The local Docker engine: is it usable, and removing what earlier, interrupted runs left behind."""

from __future__ import annotations

from collections.abc import Mapping

import docker
from docker import errors as docker_errors

from local_engine.wire import RUN_LABEL


def engine_problem(images: tuple[str, ...] = ()) -> str | None:
    """None if the engine answers and holds ``images``; otherwise why not."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except (docker_errors.DockerException, OSError) as exc:
        return f"no Docker engine reachable ({exc})"
    for image in images:
        try:
            client.images.get(image)
        except docker_errors.ImageNotFound:
            return f"base image {image} missing (no registry here: make it with scripts/base-image.sh)"
    return None


def remove_labelled(label: str = RUN_LABEL, exclude_run: str | None = None) -> list[str]:
    """Remove every container, network and volume carrying ``label`` ("key" or "key=value").

    For objects of earlier, interrupted runs (an engine restarted on the same data root keeps them);
    ``exclude_run`` spares one run id. With the bare key this also removes objects of a run going on
    right now in another process. Returns descriptions of what was removed.
    """
    client = docker.from_env(timeout=900)
    filters = {"label": [label]}

    def spared(labels: Mapping[str, str] | None) -> bool:
        return exclude_run is not None and (labels or {}).get(RUN_LABEL) == exclude_run

    removed: list[str] = []
    for container in client.api.containers(all=True, filters=filters):
        if not spared(container.get("Labels")):
            client.api.remove_container(container["Id"], force=True, v=True)
            removed.append(f"container {container['Names'][0].lstrip('/')}")
    for volume in client.api.volumes(filters=filters).get("Volumes") or []:
        if not spared(volume.get("Labels")):
            client.api.remove_volume(volume["Name"], force=True)
            removed.append(f"volume {volume['Name']}")
    for network in client.api.networks(filters=filters):
        if not spared(network.get("Labels")):
            client.api.remove_network(network["Id"])
            removed.append(f"network {network['Name']}")
    return removed
