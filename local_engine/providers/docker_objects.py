"""pulumi-docker 5.2.0 ``Network``, ``Volume`` (bridged terraform-provider-docker v4.5) and the native ``Image``.

- docker_network (internal/provider/resource_docker_network.go): no update; every input is ForceNew.
  ``ipam_config`` is an Optional+Computed set of {subnet, ip_range, gateway, aux_address}: Read stores
  what the daemon reports, so a configured element without the gateway the daemon reports differs from
  the state and replaces the network (kreuzwerker issue #54). Delete retries while endpoints remain.
- docker_volume (resource_docker_volume.go): every input is ForceNew; Create does not look for an
  existing volume: a leftover of the same name is adopted silently (VolumeCreate returns it).
- Both get delete-before-replace when the program names them (tfbridge nameRequiresDeleteBeforeReplace).
- docker.Image (pulumi-docker provider/image.go, provider.go): Check fills ``dockerfile``
  (<context>/Dockerfile), ``platform`` (linux/<arch>) and ``contextDigest`` (a hash of the build
  context's files, so an edited file is a diff); Diff never replaces: any change rebuilds (update);
  Delete does nothing; with ``skip_push`` the repo digest is the local image id. The builder is BuildKit
  unless ``builder_version`` says BuilderV1; the local engine builds with the classic builder only and
  refuses BuildKit rather than build differently.
"""

from __future__ import annotations

import hashlib
import os
import platform
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from docker import errors as docker_errors
from docker.types import IPAMConfig, IPAMPool

from local_engine.providers import Context, Diff, Provider, changed_keys, unknown_outputs
from local_engine.state import ResourceState
from local_engine.wire import EngineError, UnsupportedInputError, as_str_list, auto_name, check_keys, label_map

NETWORK_KEYS = ("name", "driver", "ipamConfigs", "ipamDriver", "ipamOptions", "internal", "labels",
                "options", "attachable", "ipv6", "checkDuplicate")
IPAM_KEYS = ("subnet", "gateway", "ipRange", "auxAddress")
VOLUME_KEYS = ("name", "driver", "driverOpts", "labels")
# buildOnPreview only matters in previews; registry only for a push (refused below).
IMAGE_KEYS = ("imageName", "build", "skipPush", "buildOnPreview", "registry")
BUILD_KEYS = ("context", "dockerfile", "args", "target", "platform", "builderVersion", "network",
              "addHosts", "contextDigest")
_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "arm64": "arm64"}
REMOVE_RETRY_S = 30.0


def _ipam_set(items: Any) -> list[tuple[tuple[str, Any], ...]]:
    """An ipam_config set as comparable elements (unset fields as the empty value the schema stores)."""
    return sorted(tuple((key, (item or {}).get(key) or ("" if key != "auxAddress" else {})) for key in IPAM_KEYS)
                  for item in items or [])


class Network(Provider):
    type = "docker:index/network:Network"
    source = "kreuzwerker/terraform-provider-docker internal/provider/resource_docker_network.go"

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        where = f"docker.Network '{name}'"
        check_keys(where, inputs, NETWORK_KEYS)
        for index, pool in enumerate(inputs.get("ipamConfigs") or []):
            check_keys(f"{where}.ipamConfigs[{index}]", pool, IPAM_KEYS)
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        changed = list(changed_keys(old.inputs, inputs, ignore=("ipamConfigs",)))
        # Optional+Computed: the state's element (with what Read stored) against the configured one.
        if inputs.get("ipamConfigs") is not None and \
                _ipam_set(old.outputs.get("ipamConfigs")) != _ipam_set(inputs.get("ipamConfigs")):
            changed.append("ipamConfigs")
        return Diff(changed=tuple(changed), replace=tuple(changed), delete_before_replace=bool(inputs.get("name")))

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        where = f"docker.Network '{name}'"
        real_name = inputs.get("name") or auto_name(name)
        pools = [IPAMPool(subnet=pool.get("subnet"), gateway=pool.get("gateway"), iprange=pool.get("ipRange"),
                          aux_addresses=pool.get("auxAddress")) for pool in inputs.get("ipamConfigs") or []]
        ipam = None
        if pools or inputs.get("ipamDriver") or inputs.get("ipamOptions"):
            ipam = IPAMConfig(driver=inputs.get("ipamDriver") or "default", pool_configs=pools,
                              options=inputs.get("ipamOptions"))
        labels = {**label_map(inputs.get("labels"), f"{where}.labels"), **ctx.labels}
        client = ctx.docker()
        try:
            network = client.networks.create(
                real_name, driver=inputs.get("driver") or "bridge", options=inputs.get("options"),
                ipam=ipam, internal=bool(inputs.get("internal", False)), labels=labels,
                enable_ipv6=bool(inputs.get("ipv6", False)),
                attachable=bool(inputs.get("attachable", False)), check_duplicate=True)
        except docker_errors.APIError as exc:
            raise EngineError(f"{where}: docker refused to create network {real_name!r}: {exc.explanation}") from exc
        attrs = client.api.inspect_network(network.id)
        ipam_out = [{key: value for key, value in (("subnet", cfg.get("Subnet")), ("gateway", cfg.get("Gateway")),
                                                  ("ipRange", cfg.get("IPRange"))) if value}
                    for cfg in (attrs.get("IPAM") or {}).get("Config") or []]
        return network.id, {**inputs, "name": real_name, "driver": attrs.get("Driver"),
                            "scope": attrs.get("Scope"), "ipamConfigs": ipam_out}

    def delete(self, ctx: Context, old: ResourceState) -> None:
        _retry_removal(f"docker.Network '{old.name}'", lambda: ctx.docker().api.remove_network(old.id))

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        return unknown_outputs({**inputs, "name": inputs.get("name")}, "scope")


class Volume(Provider):
    type = "docker:index/volume:Volume"
    source = "kreuzwerker/terraform-provider-docker internal/provider/resource_docker_volume.go"

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        check_keys(f"docker.Volume '{name}'", inputs, VOLUME_KEYS)
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        changed = changed_keys(old.inputs, inputs)
        return Diff(changed=changed, replace=changed, delete_before_replace=bool(inputs.get("name")))

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        where = f"docker.Volume '{name}'"
        real_name = inputs.get("name") or auto_name(name)
        labels = {**label_map(inputs.get("labels"), f"{where}.labels"), **ctx.labels}
        # VolumeCreate of an existing name returns that volume: adopted, as the real provider does.
        volume = ctx.docker().volumes.create(real_name, driver=inputs.get("driver") or "local",
                                             driver_opts=inputs.get("driverOpts"), labels=labels)
        return volume.name, {**inputs, "name": real_name, "driver": volume.attrs.get("Driver"),
                             "mountpoint": volume.attrs.get("Mountpoint")}

    def delete(self, ctx: Context, old: ResourceState) -> None:
        _retry_removal(f"docker.Volume '{old.name}'", lambda: ctx.docker().api.remove_volume(old.id, force=True))

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        return unknown_outputs({**inputs, "name": inputs.get("name")}, "mountpoint")


def _retry_removal(where: str, remove: Any) -> None:
    """Remove, retrying while the daemon says the object is in use (the provider retries for 30 s)."""
    deadline = time.monotonic() + REMOVE_RETRY_S
    while True:
        try:
            remove()
            return
        except docker_errors.NotFound:
            return
        except docker_errors.APIError as exc:
            if time.monotonic() >= deadline:
                raise EngineError(f"{where}: cannot be removed: {exc.explanation or exc}") from exc
            time.sleep(1)


def context_digest(context_dir: Path, dockerfile: Path) -> str:
    """A hash of every file of the build context (relative path, mode, content) and the Dockerfile, honouring
    ``.dockerignore`` entries that name files or directories (pulumi-docker provider/hash.go)."""
    ignored = {line.strip().rstrip("/") for line in (context_dir / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")} if (context_dir / ".dockerignore").is_file() else set()
    digest = hashlib.sha256()
    for path in sorted(context_dir.rglob("*")):
        relative = path.relative_to(context_dir).as_posix()
        if not path.is_file() or any(relative == i or relative.startswith(f"{i}/") for i in ignored):
            continue
        digest.update(f"{relative}\0{oct(path.stat().st_mode & 0o7777)}\0".encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    digest.update(b"Dockerfile\0" + hashlib.sha256(dockerfile.read_bytes()).digest())
    return digest.hexdigest()


def _dockerfile_arg(context_dir: Path, dockerfile: Path) -> str:
    """docker-py wants the Dockerfile relative to the context, or absolute when outside it."""
    try:
        return str(dockerfile.relative_to(context_dir))
    except ValueError:
        return str(dockerfile)


class Image(Provider):
    type = "docker:index/image:Image"
    source = "pulumi/pulumi-docker provider/image.go, provider/provider.go"

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        where = f"docker.Image '{name}'"
        check_keys(where, inputs, IMAGE_KEYS)
        if inputs.get("skipPush") is not True:
            raise UnsupportedInputError(f"{where}: skip_push must be True (there is no registry to push to)")
        if not inputs.get("imageName"):
            raise UnsupportedInputError(f"{where}: image_name is required")
        build = dict(inputs.get("build") or {})
        check_keys(f"{where}.build", build, BUILD_KEYS)
        if build.get("builderVersion") != "BuilderV1":
            raise UnsupportedInputError(
                f"{where}.build.builderVersion: {build.get('builderVersion') or 'unset (BuildKit)'}; the local engine "
                "builds with the classic builder only: set builder_version=BuilderVersion.BUILDER_V1")
        context = build.get("context") or "."
        build["dockerfile"] = build.get("dockerfile") or os.path.join(context, "Dockerfile")
        build["platform"] = build.get("platform") or f"linux/{_ARCH.get(platform.machine(), platform.machine())}"
        workdir = Path.cwd()  # Check runs while the program runs, in its project directory (runner.evaluate)
        dockerfile, context_dir = (workdir / build["dockerfile"]).resolve(), (workdir / context).resolve()
        if not dockerfile.is_file():
            raise EngineError(f"{where}: Dockerfile {dockerfile} not found")
        build["contextDigest"] = context_digest(context_dir, dockerfile)
        return {**inputs, "build": build, "buildOnPreview": bool(inputs.get("buildOnPreview", False))}

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        return Diff(changed=changed_keys(old.inputs, inputs))  # never a replacement: a rebuild

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        return inputs["imageName"], self._build(ctx, name, inputs)

    def update(self, ctx: Context, old: ResourceState, inputs: dict[str, Any], diff: Diff) -> dict[str, Any]:
        return self._build(ctx, old.name, inputs)

    def delete(self, ctx: Context, old: ResourceState) -> None:
        return None  # the image stays, as with pulumi-docker

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        return unknown_outputs({**inputs, "baseImageName": inputs["imageName"]}, "repoDigest")

    def _build(self, ctx: Context, name: str, inputs: Mapping[str, Any]) -> dict[str, Any]:
        where = f"docker.Image '{name}'"
        build = inputs["build"]
        image_name = inputs["imageName"]
        context_dir = (ctx.workdir / (build.get("context") or ".")).resolve()
        dockerfile = (ctx.workdir / build["dockerfile"]).resolve()
        optional = {key: value for key, value in (("target", build.get("target")),
                                                  ("platform", build.get("platform")),
                                                  ("network_mode", build.get("network"))) if value}
        hosts = as_str_list(build.get("addHosts"), f"{where}.build.addHosts")
        if hosts:
            optional["extra_hosts"] = dict(host.split(":", 1) for host in hosts)
        api = ctx.docker().api
        log: list[str] = []
        try:
            stream = api.build(path=str(context_dir), dockerfile=_dockerfile_arg(context_dir, dockerfile),
                               tag=image_name, buildargs={k: str(v) for k, v in (build.get("args") or {}).items()}
                               or None, rm=True, forcerm=True, decode=True, **optional)
            for chunk in stream:
                if "stream" in chunk:
                    log.extend(chunk["stream"].rstrip("\n").splitlines())
                if "error" in chunk:
                    tail = "\n    ".join(log[-30:])
                    raise EngineError(f"{where}: docker build failed: {chunk['error'].strip()}\n    {tail}")
        except docker_errors.APIError as exc:
            raise EngineError(f"{where}: docker build failed: {exc.explanation}") from exc
        image_id = api.inspect_image(image_name)["Id"]
        return {**inputs, "imageName": image_name, "baseImageName": image_name, "context": build.get("context", "."),
                "dockerfile": _dockerfile_arg(context_dir, dockerfile), "registryServer": "",
                "platform": build["platform"], "repoDigest": image_id}


PROVIDERS = (Network(), Volume(), Image())
