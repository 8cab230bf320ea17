"""Throwaway boxes for the tool tests: labelled containers of the node image on a private network."""

from __future__ import annotations

import io
import os
import subprocess
import tarfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Network
from pathlib import Path

import pytest

from config import ClusterConfig, parse
from targets import image
from tests.golden_util import VARIANTS, remap, variant_raw
from tests.support.docker import BASE_IMAGE

LABEL = "pgha.test=tools"
IMAGE = os.environ.get("PGHA_NODE_IMAGE", "pgha-node:test")
# Scales every deadline, for slow CI machines.
TIMEOUT_SCALE = float(os.environ.get("PGHA_TIMEOUT_SCALE", "1"))
ROOT = Path(__file__).resolve().parents[2]

# One private network; each variant's hosts get their own /26 of it (keeping their host numbers),
# and Docker hands out dynamic addresses only from the last /26, so nothing ever collides.
SUBNET = IPv4Network(os.environ.get("PGHA_TOOLS_SUBNET", "10.231.0.0/24"))
if SUBNET.prefixlen != 24:
    raise ValueError(f"PGHA_TOOLS_SUBNET: {SUBNET} given; a /24 is required")
BLOCKS = dict(zip((*VARIANTS, "dynamic"), SUBNET.subnets(new_prefix=26), strict=True))
NETWORK = "pgha-tools"


@dataclass(frozen=True)
class ToolsEnv:
    """What the tool tests run in: the node image and the private network's name."""

    image: str
    network: str


def variant_config(variant: str) -> ClusterConfig:
    """A test variant's config with its addresses moved into its block of the private network."""
    return parse(remap(variant_raw(variant), BLOCKS[variant]))


def docker(
    *args: str, stdin: bytes | None = None, check: bool = True, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `docker ARGS`; with check, a non-zero exit raises with the command's output."""
    proc = subprocess.run(
        ["docker", *args], input=stdin, capture_output=True, timeout=timeout * TIMEOUT_SCALE, check=False
    )
    result = subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    )
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}{result.stderr}")
    return result


def require_engine() -> None:
    """Skip the test when no Docker engine answers; under CI=true fail it instead (a skip would hide it)."""
    problem = engine_problem()
    if problem is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"tool tests need Docker but CI=true: {problem}", pytrace=False)
        pytest.skip(problem)


def engine_problem() -> str | None:
    """None when the docker CLI reaches an engine; otherwise why not."""
    try:
        docker("info", "--format", "{{.ServerVersion}}", timeout=30)
    except (OSError, AssertionError, subprocess.TimeoutExpired) as exc:
        return f"no usable Docker engine: {exc}"
    return None


def cleanup() -> None:
    """Remove every container, network and volume these tests ever labelled."""
    for kind, listing in (
        ("container", ("ps", "-aq")),
        ("network", ("network", "ls", "-q")),
        ("volume", ("volume", "ls", "-q")),
    ):
        ids = docker(*listing, "--filter", f"label={LABEL}").stdout.split()
        if not ids:
            continue
        if kind == "container":
            docker("rm", "-f", "-v", *ids)
        else:
            docker(kind, "rm", *ids)


def ensure_image() -> str:
    """The node image: PGHA_NODE_IMAGE as given (built if missing), else pgha-node:test rebuilt from
    image/Dockerfile, which costs a second when the build cache is current and is never stale."""
    if "PGHA_NODE_IMAGE" not in os.environ or docker("image", "inspect", IMAGE, check=False).returncode != 0:
        args = [f"--build-arg={key}={value}" for key, value in image.build_args(BASE_IMAGE).items()]
        docker("build", "-q", *args, "-t", IMAGE, "-f", str(ROOT / image.DOCKERFILE), str(ROOT / image.CONTEXT),
               timeout=1200)
    return IMAGE


def wait_for(what: str, probe: Callable[[], bool], deadline_s: float, interval_s: float = 0.5) -> None:
    """Poll `probe` until it is true, failing with `what` after `deadline_s` (scaled)."""
    end = time.monotonic() + deadline_s * TIMEOUT_SCALE
    while not probe():
        if time.monotonic() > end:
            raise AssertionError(f"{what}: not true after {deadline_s * TIMEOUT_SCALE:.0f} s")
        time.sleep(interval_s)


def wait_for_etcd(what: str, probe: Callable[[], bool], members: list[Container], deadline_s: float = 60) -> None:
    """wait_for, failing with what the etcd `members` logged (their warnings and errors, the last of them)."""
    try:
        wait_for(what, probe, deadline_s)
    except AssertionError as error:
        said = []
        for member in members:
            lines = [line for line in member.logs().splitlines() if '"level":"info"' not in line]
            said.append(f"--- {member.name}:\n" + "\n".join(lines[-30:]))
        raise AssertionError(f"{error}; the members said:\n" + "\n".join(said)) from None


class Container:
    """A running throwaway container of the node image."""

    def __init__(self, name: str) -> None:
        self.name = name

    def put(self, files: Mapping[str, str], mode: int = 0o644) -> None:
        """Write text files (absolute paths, parent directories created) into the container."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            for path, text in files.items():
                data = text.encode()
                info = tarfile.TarInfo(path.lstrip("/"))
                info.size, info.mode, info.mtime = len(data), mode, int(time.time())
                tar.addfile(info, io.BytesIO(data))
        docker("cp", "-", f"{self.name}:/", stdin=buf.getvalue())

    def exec(
        self,
        *cmd: str,
        user: str | None = None,
        env: Mapping[str, str] | None = None,
        check: bool = False,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run `cmd` inside the container (no shell unless cmd starts one)."""
        args = ["exec"]
        if user:
            args += ["--user", user]
        for key, value in (env or {}).items():
            args += ["--env", f"{key}={value}"]
        return docker(*args, self.name, *cmd, check=check, timeout=timeout)

    def sh(self, script: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        """Run a shell script inside the container."""
        return self.exec("sh", "-c", script, **kwargs)  # type: ignore[arg-type]

    def logs(self) -> str:
        """Everything the container's main process wrote."""
        result = docker("logs", self.name, check=False)
        return result.stdout + result.stderr


def start(
    name: str,
    cmd: Sequence[str] = ("sleep", "infinity"),
    network: str = "none",
    ip: str | None = None,
    files: Mapping[str, str] | None = None,
    capabilities: Sequence[str] = (),
) -> Container:
    """Create a labelled container (with `capabilities` added), copy `files` in, then start it running `cmd`."""
    args = ["create", "--label", LABEL, "--name", name, "--network", network, "--stop-timeout", "1"]
    if ip:
        args += ["--ip", ip]
    args += [f"--cap-add={cap}" for cap in capabilities]
    docker(*args, IMAGE, *cmd)
    container = Container(name)
    if files:
        container.put(files)
    docker("start", name)
    return container


BoxFactory = Callable[..., Container]
"""Starts an idle container of the node image (name, files) on the private network."""
Clusters = dict[str, list[Container]]
"""Running etcd members by test variant."""
