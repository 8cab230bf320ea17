"""pulumi-docker 5.2.0 ``docker:index/container:Container`` (kreuzwerker/terraform-provider-docker v4.5).

What the provider does, and so what this does (internal/provider/resource_docker_container.go and
resource_docker_container_funcs.go, pulumi-docker provider/resources.go):
- create: create the container on the first of ``networks_advanced``, connect the others, upload the
  files, start it, wait for healthy when ``wait`` (until ``wait_timeout``), then Read, which stores the
  health-check durations in Go's canonical form (``120s`` reads back as ``2m0s``). A create that made the
  container and then failed leaves it in the state with init errors (the bridge's partial state);
- diff: new inputs against the state. Only the attributes in ``UPDATABLE`` change in place; every other
  one (uploads, env, labels, ports, networks, volumes, image, command, capabilities, ...) is ForceNew,
  and pulumi-docker replaces containers delete-before-replace (``DeleteBeforeReplace: true``; an
  explicit ``name`` forces it too, tfbridge nameRequiresDeleteBeforeReplace);
- update: one ContainerUpdate call carries restart, max_retry_count, memory, memory_swap,
  memory_reservation, cpu_shares, cpu_set and device limits; ``must_run`` going false to true starts
  the container; everything else (healthcheck, wait, destroy_grace_seconds, init, tmpfs, ...) only
  changes the state: the running container keeps its old health check until it is replaced;
- delete: stop with ``destroy_grace_seconds`` as the timeout (0 when unset), force-remove with
  ``remove_volumes``, wait until it is gone.
Every input key is implemented, knowingly ignored (``IGNORED``) or refused.
"""

from __future__ import annotations

import base64
import io
import tarfile
import time
from collections.abc import Mapping
from typing import Any

from docker import errors as docker_errors
from docker.types import LogConfig, Mount, Ulimit

from local_engine.providers import Context, Diff, PartialCreateError, Provider, changed_keys, unknown_outputs
from local_engine.state import ResourceState
from local_engine.wire import (
    EngineError,
    UnsupportedInputError,
    as_int,
    as_str_list,
    auto_name,
    check_keys,
    duration_ns,
    go_duration,
    label_map,
)

HANDLED = ("name", "image", "command", "entrypoints", "envs", "labels", "ports", "networksAdvanced",
           "networkMode", "volumes", "mounts", "uploads", "capabilities", "healthcheck", "restart",
           "maxRetryCount", "hostname", "domainname", "user", "workingDir", "tmpfs", "sysctls",
           "securityOpts", "mustRun", "wait", "waitTimeout", "start", "rm", "init", "readOnly",
           "shmSize", "memory", "stopSignal", "stopTimeout", "hosts", "dns", "ulimits", "privileged",
           "ipcMode", "pidMode", "groupAdds", "stdinOpen", "tty", "logDriver", "logOpts",
           "publishAllPorts", "removeVolumes", "attach", "destroyGraceSeconds")
# logs: only used with attach (refused); containerReadRefreshTimeoutMilliseconds: only logged by Read.
IGNORED = ("logs", "containerReadRefreshTimeoutMilliseconds")
# Not ForceNew (resource_docker_container.go schema); the rest replaces the container.
UPDATABLE = frozenset({"rm", "start", "wait", "waitTimeout", "attach", "logs", "mustRun", "restart", "maxRetryCount",
                       "removeVolumes", "tmpfs", "deviceReadBps", "deviceReadIops", "deviceWriteBps",
                       "deviceWriteIops", "destroyGraceSeconds", "memory", "memoryReservation", "memorySwap",
                       "cpuShares", "cpuSet", "healthcheck", "containerReadRefreshTimeoutMilliseconds", "init",
                       "cpuPeriod", "cpuQuota"})
# What resourceDockerContainerUpdate sends in its one ContainerUpdate call.
RESOURCE_UPDATES = ("restart", "maxRetryCount", "memory", "memorySwap", "cpuShares", "cpuSet")
PORT_KEYS = ("internal", "external", "ip", "protocol")
NETWORK_KEYS = ("name", "ipv4Address", "aliases")
VOLUME_KEYS = ("volumeName", "hostPath", "containerPath", "readOnly")
MOUNT_KEYS = ("target", "type", "source", "readOnly", "tmpfsOptions", "bindOptions")
UPLOAD_KEYS = ("file", "content", "contentBase64", "source", "sourceHash", "executable",
               "permissions", "owner", "group")
HEALTH_KEYS = ("tests", "interval", "timeout", "retries", "startPeriod", "startInterval")
HEALTH_DURATIONS = ("interval", "timeout", "startPeriod", "startInterval")
#: Outputs only the provider knows.
COMPUTED = ("networkDatas", "bridge", "exitCode")


def _upload_archive(name: str, uploads: list[dict[str, Any]], ctx: Context) -> bytes:
    """One tar with every upload: mode 0644, 0744 if executable, ``permissions`` wins; owner root."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for index, upload in enumerate(uploads):
            where = f"docker.Container '{name}'.uploads[{index}]"
            check_keys(where, upload, UPLOAD_KEYS)
            given = [key for key in ("content", "contentBase64", "source") if upload.get(key)]
            if len(given) != 1:
                raise UnsupportedInputError(f"{where}: exactly one of content, contentBase64, source (got {given})")
            if given == ["content"]:
                data = str(upload["content"]).encode()
            elif given == ["contentBase64"]:
                data = base64.b64decode(upload["contentBase64"])
            else:
                data = (ctx.workdir / upload["source"]).read_bytes()
            mode = 0o744 if upload.get("executable") else 0o644
            if upload.get("permissions"):
                mode = int(str(upload["permissions"]), 8)
            info = tarfile.TarInfo(str(upload["file"]).lstrip("/"))
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            for attr, key in (("uid", "owner"), ("gid", "group")):
                value = upload.get(key)
                if value is not None and not str(value).isdigit():
                    raise UnsupportedInputError(
                        f"{where}.{key}: {value!r} is a name; the docker provider resolves names in the "
                        "user database of the machine running pulumi, not the container's: use a numeric id")
                setattr(info, attr, int(value) if value is not None else 0)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _ports(name: str, items: Any) -> tuple[list[Any], dict[str, list[dict[str, str]]]]:
    exposed: list[Any] = []
    bindings: dict[str, list[dict[str, str]]] = {}
    for index, port in enumerate(items or []):
        where = f"docker.Container '{name}'.ports[{index}]"
        check_keys(where, port, PORT_KEYS)
        internal, protocol = as_int(port["internal"], where), port.get("protocol") or "tcp"
        external = as_int(port["external"], where) if port.get("external") is not None else None
        exposed.append((internal, protocol) if protocol != "tcp" else internal)
        bindings.setdefault(f"{internal}/{protocol}", []).append(
            {"HostIp": port.get("ip") or "0.0.0.0", "HostPort": str(external or "")})
    return exposed, bindings


def _storage(name: str, inputs: Mapping[str, Any], ctx: Context) -> tuple[list[str], list[Mount]]:
    binds: list[str] = []
    mounts: list[Mount] = []
    for index, vol in enumerate(inputs.get("volumes") or []):
        where = f"docker.Container '{name}'.volumes[{index}]"
        check_keys(where, vol, VOLUME_KEYS)
        mode = "ro" if vol.get("readOnly") else "rw"
        source = vol.get("volumeName") or vol.get("hostPath")
        if vol.get("volumeName"):
            try:  # docker would silently create an unlabeled volume (and the program has a race)
                ctx.docker().volumes.get(vol["volumeName"])
            except docker_errors.NotFound:
                raise EngineError(f"{where}: volume {vol['volumeName']!r} does not exist; reference a "
                                   "docker.Volume's .name so it is created first") from None
        binds.append(f"{source}:{vol['containerPath']}:{mode}" if source else vol["containerPath"])
    for index, item in enumerate(inputs.get("mounts") or []):
        where = f"docker.Container '{name}'.mounts[{index}]"
        check_keys(where, item, MOUNT_KEYS)
        tmpfs = item.get("tmpfsOptions") or {}
        check_keys(f"{where}.tmpfsOptions", tmpfs, ("sizeBytes", "mode"))
        bind = item.get("bindOptions") or {}
        check_keys(f"{where}.bindOptions", bind, ("propagation",))
        mounts.append(Mount(item["target"], item.get("source"), type=item["type"],
                            read_only=bool(item.get("readOnly")), propagation=bind.get("propagation"),
                            tmpfs_size=as_int(tmpfs["sizeBytes"], where) if "sizeBytes" in tmpfs else None,
                            tmpfs_mode=as_int(tmpfs["mode"], where) if "mode" in tmpfs else None))
    return binds, mounts


def _healthcheck(name: str, spec: Any) -> dict[str, Any] | None:
    if not spec:
        return None
    where = f"docker.Container '{name}'.healthcheck"
    check_keys(where, spec, HEALTH_KEYS)
    if duration_ns(spec.get("startInterval"), f"{where}.startInterval"):
        raise UnsupportedInputError(f"{where}.startInterval: needs Docker API 1.44; this engine is older")
    return {"test": as_str_list(spec.get("tests"), f"{where}.tests"),
            "interval": duration_ns(spec.get("interval"), f"{where}.interval"),
            "timeout": duration_ns(spec.get("timeout"), f"{where}.timeout"),
            "start_period": duration_ns(spec.get("startPeriod"), f"{where}.startPeriod"),
            "retries": as_int(spec.get("retries", 0), f"{where}.retries")}


def _host_config(name: str, inputs: Mapping[str, Any], ctx: Context, bindings: dict[str, Any],
                 network_mode: str | None) -> dict[str, Any]:
    where = f"docker.Container '{name}'"
    binds, mounts = _storage(name, inputs, ctx)
    caps = inputs.get("capabilities") or {}
    check_keys(f"{where}.capabilities", caps, ("adds", "drops"))
    for key, allowed in (("hosts", ("host", "ip")), ("ulimits", ("name", "soft", "hard"))):
        for index, item in enumerate(inputs.get(key) or []):
            check_keys(f"{where}.{key}[{index}]", item, allowed)
    config: dict[str, Any] = {
        "port_bindings": bindings or None, "binds": binds or None, "mounts": mounts or None,
        "cap_add": caps.get("adds"), "cap_drop": caps.get("drops"),
        "restart_policy": {"Name": inputs.get("restart") or "no",
                           "MaximumRetryCount": as_int(inputs.get("maxRetryCount", 0), f"{where}.maxRetryCount")},
        "tmpfs": inputs.get("tmpfs"), "sysctls": inputs.get("sysctls"),
        "security_opt": inputs.get("securityOpts"), "auto_remove": bool(inputs.get("rm")),
        "init": bool(inputs.get("init")), "read_only": bool(inputs.get("readOnly")),
        "privileged": bool(inputs.get("privileged")), "publish_all_ports": bool(inputs.get("publishAllPorts")),
        "network_mode": network_mode, "dns": inputs.get("dns"), "group_add": inputs.get("groupAdds"),
        "ipc_mode": inputs.get("ipcMode"), "pid_mode": inputs.get("pidMode"),
        "extra_hosts": [f"{h['host']}:{h['ip']}" for h in inputs.get("hosts") or []] or None,
        "ulimits": [Ulimit(name=u["name"], soft=as_int(u["soft"], where), hard=as_int(u["hard"], where))
                    for u in inputs.get("ulimits") or []] or None,
    }
    for key, target in (("memory", "mem_limit"), ("shmSize", "shm_size")):  # given in MB
        if inputs.get(key):
            config[target] = as_int(inputs[key], f"{where}.{key}") * 1024 * 1024
    if inputs.get("logDriver"):
        config["log_config"] = LogConfig(type=inputs["logDriver"], config=inputs.get("logOpts") or {})
    return {key: value for key, value in config.items() if value is not None}


def _logs(ctx: Context, container_id: str) -> str:
    try:
        text = ctx.docker().api.logs(container_id, tail=40).decode(errors="replace")
    except docker_errors.APIError as exc:
        text = f"<logs unavailable: {exc}>"
    return "\n    ".join(text.rstrip().splitlines()) or "<no output>"


def _wait_healthy(where: str, ctx: Context, container_id: str, timeout_s: int, restart: str) -> None:
    """Poll the health status until healthy, failing on exit, cancellation or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = ctx.docker().api.inspect_container(container_id)["State"]
        health = state.get("Health")
        if health is None:
            raise EngineError(f"{where}: wait=True but the container has no healthcheck")
        if health.get("Status") == "healthy":
            return
        stopped = state.get("Status") in ("exited", "dead") and restart in ("", "no")
        if stopped or time.monotonic() >= deadline or ctx.cancel.is_set():
            reason = (f"exited with code {state.get('ExitCode')}" if stopped else
                      "cancelled" if ctx.cancel.is_set() else f"not healthy after {timeout_s}s")
            probes = "; ".join(text for p in (health.get("Log") or [])[-2:]
                               if (text := p.get("Output", "").strip()[:200]))
            raise EngineError(f"{where}: {reason} (health {health.get('Status')}: {probes or '-'})\n"
                               f"  last logs:\n    {_logs(ctx, container_id)}")
        ctx.cancel.wait(0.5)


def _read_state(api: Any, container_id: str, inputs: Mapping[str, Any], real_name: str) -> dict[str, Any]:
    """What the provider's Read stores after create: inputs, plus what it reads back from the daemon
    (name, ports, network data, health-check durations in Go's canonical form)."""
    info = api.inspect_container(container_id)
    settings = info.get("NetworkSettings") or {}
    network_data = [{"networkName": net_name, "ipAddress": data.get("IPAddress"),
                     "ipPrefixLength": data.get("IPPrefixLen"), "gateway": data.get("Gateway"),
                     "macAddress": data.get("MacAddress"), "globalIpv6Address": data.get("GlobalIPv6Address"),
                     "globalIpv6PrefixLength": data.get("GlobalIPv6PrefixLen"),
                     "ipv6Gateway": data.get("IPv6Gateway")}
                    for net_name, data in (settings.get("Networks") or {}).items()]
    ports = [{"internal": int(key.split("/")[0]), "protocol": key.split("/")[1],
              "external": int(binding["HostPort"]), "ip": binding["HostIp"]}
             for key, items in (settings.get("Ports") or {}).items() for binding in items or []]
    state = {**inputs, "name": real_name, "networkDatas": network_data, "bridge": settings.get("Bridge", "")}
    if ports and inputs.get("ports"):
        state["ports"] = sorted(ports, key=lambda p: (p["internal"], p["protocol"]))
    health = (info.get("Config") or {}).get("Healthcheck")
    if health and inputs.get("healthcheck"):
        state["healthcheck"] = {"tests": health.get("Test") or [], "retries": float(health.get("Retries") or 0),
                                **{key: go_duration(int(health.get(api_key) or 0)) for key, api_key in (
                                    ("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod"),
                                    ("startInterval", "StartInterval"))}}
    if not info["State"].get("Running"):
        state["exitCode"] = info["State"].get("ExitCode")
    return state


def _ports_view(ports: Any, state: Any = None) -> list[dict[str, Any]]:
    """Ports with the schema's defaults (protocol tcp, ip 0.0.0.0); an unset external keeps the state's."""
    known = {(p.get("internal"), p.get("protocol") or "tcp"): p for p in state or [] if isinstance(p, dict)}
    view = []
    for port in ports or []:
        key = (port.get("internal"), port.get("protocol") or "tcp")
        external = port.get("external", known.get(key, {}).get("external"))
        view.append({"internal": port.get("internal"), "protocol": key[1], "ip": port.get("ip") or "0.0.0.0",
                     "external": external})
    return sorted(view, key=lambda p: (p["internal"], p["protocol"]))


def _healthcheck_view(health: Any) -> Any:
    """A health check as compared: durations as written (the state may hold them canonical), "0s" unset."""
    if not isinstance(health, dict):
        return health
    return {**health, **{key: health.get(key) or "0s" for key in HEALTH_DURATIONS}}


class Container(Provider):
    type = "docker:index/container:Container"
    source = "kreuzwerker/terraform-provider-docker internal/provider/resource_docker_container_funcs.go"

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        where = f"docker.Container '{name}'"
        check_keys(where, inputs, HANDLED + IGNORED)
        if inputs.get("attach"):
            raise UnsupportedInputError(f"{where}: attach=True is not supported")
        for index, net in enumerate(inputs.get("networksAdvanced") or []):
            check_keys(f"{where}.networksAdvanced[{index}]", net, NETWORK_KEYS)
        if inputs.get("networksAdvanced") and inputs.get("networkMode"):
            raise UnsupportedInputError(f"{where}: both networks_advanced and network_mode given")
        _healthcheck(name, inputs.get("healthcheck"))
        _ports(name, inputs.get("ports"))
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        view = dict(old.inputs)
        view["healthcheck"] = old.outputs.get("healthcheck", old.inputs.get("healthcheck"))
        new = dict(inputs)
        view["healthcheck"], new["healthcheck"] = (_healthcheck_view(view["healthcheck"]),
                                                   _healthcheck_view(new.get("healthcheck")))
        view["ports"] = _ports_view(old.inputs.get("ports"), old.outputs.get("ports"))
        new["ports"] = _ports_view(inputs.get("ports"), old.outputs.get("ports"))
        changed = changed_keys(view, new)
        replace = tuple(key for key in changed if key not in UPDATABLE)
        notes = tuple(f"{key}: changes the state only; the running container keeps the old value until it "
                      "is replaced" for key in changed if key in UPDATABLE and key not in RESOURCE_UPDATES
                      and key != "mustRun")
        return Diff(changed=changed, replace=replace, delete_before_replace=True, notes=() if replace else notes)

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        where = f"docker.Container '{name}'"
        real_name = inputs.get("name") or auto_name(name)
        networks = inputs.get("networksAdvanced") or []
        api = ctx.docker().api
        endpoint = None
        if networks:
            first = networks[0]
            endpoint = api.create_networking_config({first["name"]: api.create_endpoint_config(
                ipv4_address=first.get("ipv4Address"), aliases=first.get("aliases"))})
        exposed, bindings = _ports(name, inputs.get("ports"))
        host_config = api.create_host_config(**_host_config(
            name, inputs, ctx, bindings, networks[0]["name"] if networks else inputs.get("networkMode")))
        labels = {**label_map(inputs.get("labels"), f"{where}.labels"), **ctx.labels}
        stop_timeout = inputs.get("stopTimeout")
        try:
            created = api.create_container(
                inputs["image"], command=inputs.get("command"), entrypoint=inputs.get("entrypoints"),
                environment=inputs.get("envs"), labels=labels, name=real_name, ports=exposed or None,
                hostname=inputs.get("hostname"), domainname=inputs.get("domainname"), user=inputs.get("user"),
                working_dir=inputs.get("workingDir"), healthcheck=_healthcheck(name, inputs.get("healthcheck")),
                stop_signal=inputs.get("stopSignal"), tty=bool(inputs.get("tty")),
                stdin_open=bool(inputs.get("stdinOpen")), host_config=host_config, networking_config=endpoint,
                stop_timeout=as_int(stop_timeout, f"{where}.stopTimeout") if stop_timeout is not None else None)
        except docker_errors.APIError as exc:
            raise EngineError(f"{where}: docker refused to create container {real_name!r}: "
                              f"{exc.explanation}") from exc
        container_id = created["Id"]
        try:
            for net in networks[1:]:
                api.connect_container_to_network(container_id, net["name"], ipv4_address=net.get("ipv4Address"),
                                                 aliases=net.get("aliases"))
            uploads = inputs.get("uploads")
            if uploads and not api.put_archive(container_id, "/", _upload_archive(name, uploads, ctx)):
                raise EngineError(f"{where}: uploading files failed")
            if inputs.get("start", True):
                api.start(container_id)
                if inputs.get("wait"):
                    timeout = as_int(inputs.get("waitTimeout", 60), f"{where}.waitTimeout")
                    _wait_healthy(where, ctx, container_id, timeout, inputs.get("restart") or "no")
                state = api.inspect_container(container_id)["State"]
                if inputs.get("mustRun", True) and not state.get("Running"):
                    raise EngineError(f"{where}: container is not running (exit code {state.get('ExitCode')})\n"
                                      f"  last logs:\n    {_logs(ctx, container_id)}")
        except (EngineError, docker_errors.APIError) as exc:
            message = str(exc) if isinstance(exc, EngineError) else f"{where}: {exc.explanation or exc}"
            raise PartialCreateError(container_id, _read_state(api, container_id, inputs, real_name),
                                     message) from exc
        return container_id, _read_state(api, container_id, inputs, real_name)

    def update(self, ctx: Context, old: ResourceState, inputs: dict[str, Any], diff: Diff) -> dict[str, Any]:
        api = ctx.docker().api
        where = f"docker.Container '{old.name}'"
        if any(key in diff.changed for key in RESOURCE_UPDATES):
            limits: dict[str, Any] = {"restart_policy": {
                "Name": inputs.get("restart") or "no",
                "MaximumRetryCount": as_int(inputs.get("maxRetryCount", 0), f"{where}.maxRetryCount")}}
            for key, arg in (("memory", "mem_limit"), ("memorySwap", "memswap_limit")):
                if inputs.get(key):
                    limits[arg] = as_int(inputs[key], f"{where}.{key}") * 1024 * 1024
            if inputs.get("cpuShares"):
                limits["cpu_shares"] = as_int(inputs["cpuShares"], f"{where}.cpuShares")
            if inputs.get("cpuSet"):
                limits["cpuset_cpus"] = str(inputs["cpuSet"])
            try:
                api.update_container(old.id, **limits)
            except docker_errors.APIError as exc:
                raise EngineError(f"{where}: updating the container failed: {exc.explanation or exc}") from exc
        was_running = old.inputs.get("mustRun", True)
        if "mustRun" in diff.changed and inputs.get("mustRun", True) and not was_running and inputs.get("start", True):
            api.start(old.id)
        # Update does not Read: the state takes the inputs as given (a non-canonical duration included).
        return {**old.outputs, **inputs}

    def delete(self, ctx: Context, old: ResourceState) -> None:
        api = ctx.docker().api
        grace = as_int(old.inputs.get("destroyGraceSeconds", 0), f"docker.Container '{old.name}'.destroyGraceSeconds")
        try:
            api.stop(old.id, timeout=grace)
        except docker_errors.NotFound:
            return
        except docker_errors.APIError:
            pass  # already stopped or being removed: the forced removal below settles it
        try:
            api.remove_container(old.id, force=True, v=bool(old.inputs.get("removeVolumes", True)))
        except docker_errors.NotFound:
            return
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                api.inspect_container(old.id)
            except docker_errors.NotFound:
                return
            time.sleep(0.2)
        raise EngineError(f"docker.Container '{old.name}': still there 60 s after its removal")

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        if op == "update" and old is not None:
            return {**old.outputs, **inputs}
        return unknown_outputs({**inputs, "name": inputs.get("name") or None}, *COMPUTED)


PROVIDERS = (Container(),)
