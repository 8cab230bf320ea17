"""Real Docker networks, volumes and image builds for pulumi-docker 5.x resources.

Each ``create_*`` function takes the resource's logical name and its *unwrapped* engine inputs,
creates the object through docker-py, reports it to ``ctx.record`` as soon as it exists (so a
later failure can still clean it up) and returns ``(resource id, output properties)``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker import errors as docker_errors
from docker.types import IPAMConfig, IPAMPool

from .values import HarnessError, UnsupportedInputError, as_str_list, auto_name, check_keys, label_map

#: ``record(kind, docker_id, detail)``: kind is "container", "volume", "network" or "image".
Recorder = Callable[[str, str, dict[str, Any]], None]


@dataclass
class CreateContext:
    """What a creator needs besides the inputs: engine client, run labels, paths, cancellation."""

    client: docker.DockerClient
    labels: dict[str, str]
    workdir: Path
    cancel: threading.Event
    record: Recorder


NETWORK_KEYS = ("name", "driver", "ipamConfigs", "ipamDriver", "ipamOptions", "internal", "labels",
                "options", "attachable", "ipv6", "checkDuplicate")
IPAM_KEYS = ("subnet", "gateway", "ipRange", "auxAddress")
VOLUME_KEYS = ("name", "driver", "driverOpts", "labels")
# buildOnPreview only matters in previews; registry only matters for a push (refused below).
IMAGE_KEYS = ("imageName", "build", "skipPush", "buildOnPreview", "registry")
# builderVersion: the harness always uses the engine's classic builder (no buildx/BuildKit
# session here); a Dockerfile needing BuildKit features fails the build loudly.
BUILD_KEYS = ("context", "dockerfile", "args", "target", "platform", "builderVersion", "network",
              "addHosts")


def create_network(name: str, inputs: Mapping[str, Any], ctx: CreateContext) -> tuple[str, dict[str, Any]]:
    """docker:index/network:Network."""
    where = f"docker.Network '{name}'"
    check_keys(where, inputs, NETWORK_KEYS)
    real_name = inputs.get("name") or auto_name(name)
    pools = []
    for index, pool in enumerate(inputs.get("ipamConfigs") or []):
        check_keys(f"{where}.ipamConfigs[{index}]", pool, IPAM_KEYS)
        pools.append(IPAMPool(subnet=pool.get("subnet"), gateway=pool.get("gateway"),
                              iprange=pool.get("ipRange"), aux_addresses=pool.get("auxAddress")))
    ipam = None
    if pools or inputs.get("ipamDriver") or inputs.get("ipamOptions"):
        ipam = IPAMConfig(driver=inputs.get("ipamDriver") or "default", pool_configs=pools,
                          options=inputs.get("ipamOptions"))
    labels = {**label_map(inputs.get("labels"), f"{where}.labels"), **ctx.labels}
    try:
        network = ctx.client.networks.create(
            real_name, driver=inputs.get("driver") or "bridge", options=inputs.get("options"),
            ipam=ipam, internal=bool(inputs.get("internal", False)), labels=labels,
            enable_ipv6=bool(inputs.get("ipv6", False)),
            attachable=bool(inputs.get("attachable", False)), check_duplicate=True)
    except docker_errors.APIError as exc:
        raise HarnessError(f"{where}: docker refused to create network {real_name!r}: {exc.explanation}") from exc
    ctx.record("network", network.id, {"name": real_name})
    attrs = ctx.client.api.inspect_network(network.id)
    ipam_out = [{key: value for key, value in (("subnet", cfg.get("Subnet")), ("gateway", cfg.get("Gateway")),
                                              ("ipRange", cfg.get("IPRange"))) if value}
                for cfg in (attrs.get("IPAM") or {}).get("Config") or []]
    return network.id, {**inputs, "name": real_name, "driver": attrs.get("Driver"),
                        "scope": attrs.get("Scope"), "ipamConfigs": ipam_out}


def create_volume(name: str, inputs: Mapping[str, Any], ctx: CreateContext) -> tuple[str, dict[str, Any]]:
    """docker:index/volume:Volume (the id is the volume name, as with the real provider)."""
    where = f"docker.Volume '{name}'"
    check_keys(where, inputs, VOLUME_KEYS)
    real_name = inputs.get("name") or auto_name(name)
    labels = {**label_map(inputs.get("labels"), f"{where}.labels"), **ctx.labels}
    try:
        ctx.client.volumes.get(real_name)
    except docker_errors.NotFound:
        pass
    else:
        raise HarnessError(f"{where}: a volume named {real_name!r} already exists (leftover? see cleanup_leftovers)")
    volume = ctx.client.volumes.create(real_name, driver=inputs.get("driver") or "local",
                                       driver_opts=inputs.get("driverOpts"), labels=labels)
    ctx.record("volume", volume.name, {"name": real_name})
    return volume.name, {**inputs, "name": real_name, "driver": volume.attrs.get("Driver"),
                         "mountpoint": volume.attrs.get("Mountpoint")}


def _dockerfile_arg(context_dir: Path, dockerfile: Path) -> str:
    """docker-py wants the Dockerfile relative to the context, or absolute when outside it."""
    try:
        return str(dockerfile.relative_to(context_dir))
    except ValueError:
        return str(dockerfile)


def build_image(name: str, inputs: Mapping[str, Any], ctx: CreateContext) -> tuple[str, dict[str, Any]]:
    """docker:index/image:Image: a real local build, never a push.

    As in pulumi-docker's provider, ``context`` and ``dockerfile`` are relative to the program's
    working directory (``dockerfile`` defaults to ``<context>/Dockerfile``), the resource id is the
    image name, and ``repoDigest`` stays unset because nothing is pushed.
    """
    where = f"docker.Image '{name}'"
    check_keys(where, inputs, IMAGE_KEYS)
    if inputs.get("skipPush") is not True:
        raise UnsupportedInputError(f"{where}: skip_push must be True (there is no registry to push to)")
    image_name = inputs.get("imageName")
    if not image_name:
        raise UnsupportedInputError(f"{where}: image_name is required")
    build = inputs.get("build") or {}
    check_keys(f"{where}.build", build, BUILD_KEYS)
    context_dir = (ctx.workdir / build.get("context", ".")).resolve()
    dockerfile = (ctx.workdir / build["dockerfile"]).resolve() if build.get("dockerfile") \
        else context_dir / "Dockerfile"
    if not dockerfile.is_file():
        raise HarnessError(f"{where}: Dockerfile {dockerfile} not found")
    log: list[str] = []
    optional = {key: value for key, value in (("target", build.get("target")),
                                              ("platform", build.get("platform")),
                                              ("network_mode", build.get("network"))) if value}
    hosts = as_str_list(build.get("addHosts"), f"{where}.build.addHosts")
    if hosts:
        optional["extra_hosts"] = dict(host.split(":", 1) for host in hosts)
    try:
        stream = ctx.client.api.build(
            path=str(context_dir), dockerfile=_dockerfile_arg(context_dir, dockerfile), tag=image_name,
            buildargs={k: str(v) for k, v in (build.get("args") or {}).items()} or None,
            rm=True, forcerm=True, decode=True, **optional)
        for chunk in stream:
            if "stream" in chunk:
                log.extend(chunk["stream"].rstrip("\n").splitlines())
            if "error" in chunk:
                tail = "\n    ".join(log[-30:])
                raise HarnessError(f"{where}: docker build failed: {chunk['error'].strip()}\n    {tail}")
    except docker_errors.APIError as exc:
        raise HarnessError(f"{where}: docker build failed: {exc.explanation}") from exc
    image_id = ctx.client.api.inspect_image(image_name)["Id"]
    ctx.record("image", image_id, {"name": image_name})
    relative = _dockerfile_arg(context_dir, dockerfile)
    return image_name, {**inputs, "imageName": image_name, "baseImageName": image_name,
                        "context": build.get("context", "."), "dockerfile": relative,
                        "registryServer": ""}
