"""Bare-metal-like test hosts for the prod (ssh) target: systemd containers reached over real SSH.

One container per host from ``Dockerfile`` (Debian trixie, systemd as PID 1, sshd, root login by a
throwaway ed25519 key), each with a fixed address on a network of its own and SSH host keys of its own,
made at its first boot; the fleet reads each host's public key through ``docker exec`` (a channel the
network cannot tamper with), as an operator reads it on a console, for the stack to pin. Nothing of the
cluster is installed: the program's remote commands do that from Debian's registry. What the hosts share:

- a download cache of .deb files (volume ``pgha-e2e-ssh-apt-cache``, kept across sessions like a
  build cache), warmed once per session by a throwaway container so the hosts do not each fetch
  the same packages (see ``pgha-apt-cache``);
- on the PostgreSQL hosts, the pgBackRest repository (volume ``pgha-e2e-ssh-backup`` at the stack's
  ``backup.repo_path``), standing in for the NFS share the README asks for.

Everything else carries the label ``pgha.e2e.ssh=1`` and is removed by ``cleanup()``.
"""

from __future__ import annotations

import base64
import io
import tarfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import docker
import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from docker import errors as docker_errors

HERE = Path(__file__).resolve().parent
LABEL = "pgha.e2e.ssh"
CACHE_LABEL = "pgha.e2e.ssh.cache"
IMAGE = "pgha-host:test"
NETWORK = "pgha-e2e-ssh"
SUBNET = "10.93.0.0/24"
PREFIX = "pgha-e2e-ssh-"
APT_CACHE_VOLUME = "pgha-e2e-ssh-apt-cache"
APT_CACHE_PATH = "/var/cache/pgha-apt"
BACKUP_VOLUME = "pgha-e2e-ssh-backup"
# What a systemd container needs where --privileged is refused (SYS_ADMIN, unconfined seccomp and
# apparmor, a read-only cgroup mount, tmpfs on /run), plus the capabilities VRRP needs.
CAPABILITIES = ["SYS_ADMIN", "NET_ADMIN", "NET_BROADCAST", "NET_RAW"]
SECURITY_OPT = ["seccomp=unconfined", "apparmor=unconfined"]
BOOT_TIMEOUT_S = 120
HOST_KEY = "/etc/ssh/ssh_host_ed25519_key.pub"


def keypair() -> tuple[str, str]:
    """A throwaway ed25519 key: (private key in OpenSSH format, public key line)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public.decode() + " pgha-e2e-ssh\n"


def build_image(client: docker.DockerClient, base_image: str = "debian:trixie-slim") -> None:
    """Build the host image from this directory (a build cache: it is kept)."""
    stream = client.api.build(path=str(HERE), tag=IMAGE, buildargs={"BASE_IMAGE": base_image}, rm=True,
                              forcerm=True, decode=True)
    log: list[str] = []
    for chunk in stream:
        log.extend(chunk.get("stream", "").rstrip("\n").splitlines())
        if "error" in chunk:
            raise RuntimeError(f"building {IMAGE} failed: {chunk['error']}\n" + "\n".join(log[-30:]))


def cleanup(client: docker.DockerClient | None = None, label: str = LABEL) -> list[str]:
    """Remove every container, network and volume labelled `label` (``pgha.e2e.ssh``; the cache stays)."""
    client = client or docker.from_env()
    removed = []
    for container in client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True, v=True)
        removed.append(f"container {container.name}")
    for network in client.networks.list(filters={"label": label}):
        network.remove()
        removed.append(f"network {network.name}")
    for volume in client.volumes.list(filters={"label": label}):
        volume.remove(force=True)
        removed.append(f"volume {volume.name}")
    return removed


def _tar(files: Mapping[str, tuple[str, int]]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for path, (text, mode) in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def warm_apt_cache(client: docker.DockerClient, packages: Iterable[str]) -> str:
    """Download ``packages`` (with dependencies) into the shared cache from a throwaway container.

    Only saves time: a package missing from the cache is downloaded by the host that needs it.
    """
    names = " ".join(sorted(set(packages)))
    script = ("set -e; apt-get update -qq; "
              f"apt-get install -y -qq --download-only --no-install-recommends {names} >/dev/null; "
              "/usr/local/sbin/pgha-apt-cache push; ls " + APT_CACHE_PATH + " | wc -l")
    output = client.containers.run(IMAGE, ["bash", "-c", script], remove=True, labels={LABEL: "1"},
                                   volumes={APT_CACHE_VOLUME: {"bind": APT_CACHE_PATH, "mode": "rw"}})
    return output.decode().strip()


@dataclass
class Fleet:
    """The running test hosts: addresses by node name, the key that logs in as root, each host's own key."""

    addresses: dict[str, str]
    private_key: str
    public_key: str
    client: docker.DockerClient = field(repr=False)
    # The hosts that mount the shared backup volume, and where.
    backup: tuple[set[str], str] = field(default=(set(), ""), repr=False)
    # Node -> its SSH host key (ed25519, `TYPE BASE64`), read at its boot through docker exec.
    host_keys_by_node: dict[str, str] = field(default_factory=dict)
    # Where the hosts live: the network (made by the caller), their container names' prefix and their label.
    network: str = NETWORK
    prefix: str = PREFIX
    label: str = LABEL
    apt_cache: bool = True

    def host_keys(self) -> dict[str, str]:
        """Address -> SSH host key of every running host: what `pgha:ssh.host_keys` pins."""
        return {self.addresses[node]: key for node, key in self.host_keys_by_node.items()}

    def boot(self, node: str, etc_ssh: bytes | None = None) -> None:
        """Create and start the host `node` from the image: nothing installed, only the session's SSH key (and
        the host keys in `etc_ssh`, a tar of /etc/ssh, when given: else it makes its own at its first boot)."""
        hosts, path = self.backup
        volumes = {APT_CACHE_VOLUME: {"bind": APT_CACHE_PATH, "mode": "rw"}} if self.apt_cache else {}
        if node in hosts:
            volumes[BACKUP_VOLUME] = {"bind": path, "mode": "rw"}
        api = self.client.api
        host_config = api.create_host_config(
            cap_add=CAPABILITIES, security_opt=SECURITY_OPT, tmpfs={"/run": "", "/run/lock": ""},
            binds={"/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "ro"}, **volumes})
        created = api.create_container(
            IMAGE, name=self.prefix + node, hostname=node, labels={self.label: "1"},
            environment={"container": "docker"}, host_config=host_config,
            networking_config=api.create_networking_config(
                {self.network: api.create_endpoint_config(ipv4_address=self.addresses[node])}))
        container = self.client.containers.get(created["Id"])
        container.put_archive("/root/.ssh", _tar({"authorized_keys": (self.public_key, 0o600)}))
        if etc_ssh is not None:
            container.put_archive("/etc", etc_ssh)
        self.host_keys_by_node.pop(node, None)
        container.start()

    def read_host_key(self, node: str, timeout_s: float = BOOT_TIMEOUT_S) -> str:
        """The host key `node` made at its first boot, read inside it (docker exec), never over the network."""
        deadline = time.monotonic() + timeout_s
        while True:
            status, output = self.container(node).exec_run(["cat", HOST_KEY])
            fields = output.decode(errors="replace").split()
            if status == 0 and len(fields) >= 2:
                self.host_keys_by_node[node] = " ".join(fields[:2])
                return self.host_keys_by_node[node]
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node}: no {HOST_KEY} after {timeout_s}s ({output!r})")
            time.sleep(0.2)

    def rebuild(self, node: str, keep_host_keys: bool = False) -> None:
        """The host `node` lost and rebuilt empty at the same address: a fresh machine, reachable over SSH, with
        new host keys, or with the old machine's (`keep_host_keys`: restored from a backup of /etc/ssh)."""
        etc_ssh = b"".join(self.container(node).get_archive("/etc/ssh")[0]) if keep_host_keys else None
        self.container(node).remove(force=True, v=True)
        self.boot(node, etc_ssh)
        self.wait_ssh(node)

    def move(self, node: str, address: str) -> None:
        """The host `node` lost, and a fresh machine under its name at `address` in its place."""
        self.addresses[node] = address
        self.rebuild(node)

    def container(self, node: str) -> docker.models.containers.Container:
        return self.client.containers.get(self.prefix + node)

    def ssh(self, node: str, command: str, timeout_s: float = 60) -> tuple[int, str]:
        """Run ``command`` on ``node`` over SSH as root, its host key checked: (exit status, combined output)."""
        key_type, blob = (self.host_keys_by_node.get(node) or self.read_host_key(node)).split()
        client = paramiko.SSHClient()
        client.get_host_keys().add(self.addresses[node], key_type,
                                   paramiko.PKey.from_type_string(key_type, base64.b64decode(blob)))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        client.connect(self.addresses[node], username="root", pkey=_pkey(self.private_key), timeout=10,
                       look_for_keys=False, allow_agent=False)
        try:
            _, stdout, _ = client.exec_command(command, timeout=timeout_s, get_pty=False)
            stdout.channel.set_combine_stderr(True)
            text = stdout.read().decode(errors="replace")
            return stdout.channel.recv_exit_status(), text
        finally:
            client.close()

    def wait_ssh(self, node: str, timeout_s: float = BOOT_TIMEOUT_S) -> None:
        """Until ``node`` answers over SSH and systemd has finished booting (its host key read first)."""
        deadline = time.monotonic() + timeout_s
        self.read_host_key(node, timeout_s)
        last: object = None
        while time.monotonic() < deadline:
            try:
                status, output = self.ssh(node, "systemctl is-system-running --wait")
                if output.strip() in ("running", "degraded"):
                    return
                last = output.strip() or status
            except (OSError, paramiko.SSHException) as exc:
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"{node} ({self.addresses[node]}): no SSH/systemd after {timeout_s}s (last: {last!r})")


def _pkey(private_key: str) -> paramiko.PKey:
    return paramiko.Ed25519Key.from_private_key(io.StringIO(private_key))


def start_fleet(addresses: Mapping[str, str], backup_hosts: Iterable[str], backup_path: str,
                packages: Iterable[str] = ()) -> Fleet:
    """Clean up leftovers, build the image, start one host per address and wait until SSH answers."""
    client = docker.from_env(timeout=900)
    cleanup(client)
    build_image(client)
    try:
        client.volumes.get(APT_CACHE_VOLUME)
    except docker_errors.NotFound:
        client.volumes.create(APT_CACHE_VOLUME, labels={CACHE_LABEL: "1"})
    warm_error: list[BaseException] = []

    def warm() -> None:
        try:
            warm_apt_cache(client, packages)
        except BaseException as exc:  # reported below; a cold cache only costs time
            warm_error.append(exc)

    warmer = threading.Thread(target=warm, daemon=True, name="pgha-apt-warm")
    if packages:
        warmer.start()
    client.networks.create(NETWORK, driver="bridge", labels={LABEL: "1"},
                           ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]))
    client.volumes.create(BACKUP_VOLUME, labels={LABEL: "1"})
    private, public = keypair()
    fleet = Fleet(dict(addresses), private, public, client)
    fleet.backup = (set(backup_hosts), backup_path)
    for node in addresses:
        fleet.boot(node)
    for node in addresses:
        fleet.wait_ssh(node)
    if packages:
        warmer.join(timeout=900)
        if warm_error:
            print(f"warming the apt cache failed (hosts download themselves): {warm_error[0]}")
    return fleet
