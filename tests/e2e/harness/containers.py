"""Real Docker containers for ``docker:index/container:Container`` (pulumi-docker 5.x inputs).

Order, as in the docker provider: create (attached to the first of ``networks_advanced``), connect
the other networks, upload files, start, then check ``must_run`` and honor ``wait``. Every input
key is either implemented, knowingly ignored (listed in ``IGNORED``) or refused.
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

from .docker_objects import CreateContext
from .values import (
    HarnessError,
    UnsupportedInputError,
    as_int,
    as_str_list,
    auto_name,
    check_keys,
    duration_ns,
    label_map,
)

HANDLED = ("name", "image", "command", "entrypoints", "envs", "labels", "ports", "networksAdvanced",
           "networkMode", "volumes", "mounts", "uploads", "capabilities", "healthcheck", "restart",
           "maxRetryCount", "hostname", "domainname", "user", "workingDir", "tmpfs", "sysctls",
           "securityOpts", "mustRun", "wait", "waitTimeout", "start", "rm", "init", "readOnly",
           "shmSize", "memory", "stopSignal", "stopTimeout", "hosts", "dns", "ulimits", "privileged",
           "ipcMode", "pidMode", "groupAdds", "stdinOpen", "tty", "logDriver", "logOpts",
           "publishAllPorts", "removeVolumes", "attach")
# destroyGraceSeconds: destroy force-removes; logs: only used with attach (refused);
# containerReadRefreshTimeoutMilliseconds: provider read polling only.
IGNORED = ("destroyGraceSeconds", "logs", "containerReadRefreshTimeoutMilliseconds")
PORT_KEYS = ("internal", "external", "ip", "protocol")
NETWORK_KEYS = ("name", "ipv4Address", "aliases")
VOLUME_KEYS = ("volumeName", "hostPath", "containerPath", "readOnly")
MOUNT_KEYS = ("target", "type", "source", "readOnly", "tmpfsOptions", "bindOptions")
UPLOAD_KEYS = ("file", "content", "contentBase64", "source", "sourceHash", "executable",
               "permissions", "owner", "group")
HEALTH_KEYS = ("tests", "interval", "timeout", "retries", "startPeriod", "startInterval")


def _upload_archive(name: str, uploads: list[dict[str, Any]], ctx: CreateContext) -> bytes:
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


def _storage(name: str, inputs: Mapping[str, Any], ctx: CreateContext) -> tuple[list[str], list[Mount]]:
    binds: list[str] = []
    mounts: list[Mount] = []
    for index, vol in enumerate(inputs.get("volumes") or []):
        where = f"docker.Container '{name}'.volumes[{index}]"
        check_keys(where, vol, VOLUME_KEYS)
        mode = "ro" if vol.get("readOnly") else "rw"
        source = vol.get("volumeName") or vol.get("hostPath")
        if vol.get("volumeName"):
            try:  # docker would silently create an unlabeled volume (and the program has a race)
                ctx.client.volumes.get(vol["volumeName"])
            except docker_errors.NotFound:
                raise HarnessError(f"{where}: volume {vol['volumeName']!r} does not exist; reference a "
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


def _host_config(name: str, inputs: Mapping[str, Any], ctx: CreateContext, bindings: dict[str, Any],
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


def _logs(ctx: CreateContext, container_id: str) -> str:
    try:
        text = ctx.client.api.logs(container_id, tail=40).decode(errors="replace")
    except docker_errors.APIError as exc:
        text = f"<logs unavailable: {exc}>"
    return "\n    ".join(text.rstrip().splitlines()) or "<no output>"


def _wait_healthy(where: str, ctx: CreateContext, container_id: str, timeout_s: int, restart: str) -> None:
    """Poll the health status until healthy, failing on exit, cancellation or the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = ctx.client.api.inspect_container(container_id)["State"]
        health = state.get("Health")
        if health is None:
            raise HarnessError(f"{where}: wait=True but the container has no healthcheck")
        if health.get("Status") == "healthy":
            return
        stopped = state.get("Status") in ("exited", "dead") and restart in ("", "no")
        if stopped or time.monotonic() >= deadline or ctx.cancel.is_set():
            reason = (f"exited with code {state.get('ExitCode')}" if stopped else
                      "cancelled" if ctx.cancel.is_set() else f"not healthy after {timeout_s}s")
            probes = "; ".join(text for p in (health.get("Log") or [])[-2:]
                               if (text := p.get("Output", "").strip()[:200]))
            raise HarnessError(f"{where}: {reason} (health {health.get('Status')}: {probes or '-'})\n"
                               f"  last logs:\n    {_logs(ctx, container_id)}")
        ctx.cancel.wait(0.5)


def create_container(name: str, inputs: Mapping[str, Any], ctx: CreateContext) -> tuple[str, dict[str, Any]]:
    """docker:index/container:Container."""
    where = f"docker.Container '{name}'"
    check_keys(where, inputs, HANDLED + IGNORED)
    if inputs.get("attach"):
        raise UnsupportedInputError(f"{where}: attach=True is not supported")
    real_name = inputs.get("name") or auto_name(name)
    networks = inputs.get("networksAdvanced") or []
    for index, net in enumerate(networks):
        check_keys(f"{where}.networksAdvanced[{index}]", net, NETWORK_KEYS)
    if networks and inputs.get("networkMode"):
        raise UnsupportedInputError(f"{where}: both networks_advanced and network_mode given")
    api = ctx.client.api
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
        raise HarnessError(f"{where}: docker refused to create container {real_name!r}: {exc.explanation}") from exc
    container_id = created["Id"]
    ctx.record("container", container_id, {"name": real_name, "removeVolumes": inputs.get("removeVolumes", True)})
    try:
        for net in networks[1:]:
            api.connect_container_to_network(container_id, net["name"], ipv4_address=net.get("ipv4Address"),
                                             aliases=net.get("aliases"))
        uploads = inputs.get("uploads")
        if uploads and not api.put_archive(container_id, "/", _upload_archive(name, uploads, ctx)):
            raise HarnessError(f"{where}: uploading files failed")
        if inputs.get("start", True):
            api.start(container_id)
            if inputs.get("wait"):
                timeout = as_int(inputs.get("waitTimeout", 60), f"{where}.waitTimeout")
                _wait_healthy(where, ctx, container_id, timeout, inputs.get("restart") or "no")
            state = api.inspect_container(container_id)["State"]
            if inputs.get("mustRun", True) and not state.get("Running"):
                raise HarnessError(f"{where}: container is not running (exit code {state.get('ExitCode')})\n"
                                   f"  last logs:\n    {_logs(ctx, container_id)}")
    except docker_errors.APIError as exc:
        raise HarnessError(f"{where}: {exc.explanation or exc}") from exc
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
    if ports:
        state["ports"] = ports
    if not info["State"].get("Running"):
        state["exitCode"] = info["State"].get("ExitCode")
    return container_id, state
