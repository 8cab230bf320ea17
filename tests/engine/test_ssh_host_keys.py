"""Host key pinning against a real sshd: one systemd test host (tests/e2e/hosts), reached by the local engine's
``command:remote:Command`` as pulumi-command 1.2.1 reaches it (it offers the host exactly the pinned key's type
and accepts only that key, x/crypto's FixedHostKey).

With the host's key a command runs; with another key the deployment fails naming the host, and nothing ran
there; the host's ECDSA key works as well as its ed25519 one (the type offered is the pinned one, not Go's
default order, where ECDSA comes first); its RSA key never connects (the SHA-1 "ssh-rsa" that pulumi-command
asks for is not offered by OpenSSH 10), which is why the config refuses RSA pins. Two hosts made from the same
image hold different keys, as reinstalled machines do.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import docker
import pulumi
import pulumi_command as pcommand
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from local_engine import Stack, UpdateFailedError
from tests.e2e.hosts import fleet as fleet_module
from tests.support.docker import require_engine

pytestmark = pytest.mark.e2e
# A network, names and a label of this module's own: the prod suite's hosts (pgha.e2e.ssh) may be running.
LABEL = "pgha.e2e.hostkey"
NETWORK = "pgha-e2e-hostkey"
SUBNET = "10.94.0.0/24"
HOSTS = {"box-1": "10.94.0.11", "box-2": "10.94.0.12"}
# The program's connections allow 20 dials; two keep this test short (a mismatch is retried like any dial error).
DIALS = 2


@pytest.fixture(scope="module")
def fleet() -> Iterator[fleet_module.Fleet]:
    require_engine()
    client = docker.from_env(timeout=900)
    fleet_module.cleanup(client, LABEL)
    fleet_module.build_image(client)
    client.networks.create(NETWORK, driver="bridge", labels={LABEL: "1"},
                           ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)]))
    private, public = fleet_module.keypair()
    hosts = fleet_module.Fleet(dict(HOSTS), private, public, client, network=NETWORK, prefix=f"{NETWORK}-",
                               label=LABEL, apt_cache=False)
    try:
        for node in HOSTS:
            hosts.boot(node)
        for node in HOSTS:
            hosts.wait_ssh(node)
        yield hosts
    finally:
        fleet_module.cleanup(client, LABEL)


def host_key(fleet: fleet_module.Fleet, node: str, kind: str) -> str:
    """`node`'s public host key of `kind` (ed25519, ecdsa, rsa), read inside it as an operator would."""
    status, output = fleet.container(node).exec_run(["cat", f"/etc/ssh/ssh_host_{kind}_key.pub"])
    assert status == 0, output
    return " ".join(output.decode().split()[:2])


def touch(fleet: fleet_module.Fleet, key: str, marker: str) -> Callable[[], None]:
    """A program of one remote command on box-1, pinning `key`, that creates `marker`."""
    def program() -> None:
        pcommand.remote.Command("touch", connection=pcommand.remote.ConnectionArgs(
            host=HOSTS["box-1"], user="root", private_key=pulumi.Output.secret(fleet.private_key), host_key=key,
            dial_error_limit=DIALS), create="bash -s", stdin=f"touch {marker}\n", add_previous_output_in_env=False)
    return program


def exists(fleet: fleet_module.Fleet, path: str) -> bool:
    return fleet.container("box-1").exec_run(["test", "-e", path])[0] == 0


def test_every_host_made_from_the_image_has_keys_of_its_own(fleet: fleet_module.Fleet) -> None:
    keys = {node: host_key(fleet, node, "ed25519") for node in HOSTS}
    assert keys["box-1"] != keys["box-2"]
    assert fleet.host_keys() == {HOSTS[n]: k for n, k in keys.items()}, "what the fleet read at boot"


def test_the_right_key_runs_and_a_wrong_one_fails_naming_the_host_with_nothing_run(
        fleet: fleet_module.Fleet, new_stack: Callable[..., Stack]) -> None:
    for kind in ("ed25519", "ecdsa"):
        marker = f"/root/pinned-{kind}-{uuid.uuid4().hex[:8]}"
        new_stack().up(touch(fleet, host_key(fleet, "box-1", kind), marker))
        assert exists(fleet, marker), f"the command ran with the host's {kind} key pinned"
    other = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    impostor = host_key(fleet, "box-2", "ed25519")  # a real host's key, not this one's: a machine in the middle
    for key in (other, impostor):
        marker = f"/root/mismatch-{uuid.uuid4().hex[:8]}"
        with pytest.raises(UpdateFailedError) as failed:
            new_stack().up(touch(fleet, key, marker))
        message = str(failed.value)
        assert (f"root@{HOSTS['box-1']}:22: after {DIALS} failed attempts: ssh: handshake failed: ssh: host key "
                "mismatch") in message, message
        assert not exists(fleet, marker), "nothing ran on the host"


def test_an_rsa_pin_never_connects_to_openssh_10(fleet: fleet_module.Fleet, new_stack: Callable[..., Stack]) -> None:
    # What sshd offers (its effective configuration): RSA only with SHA-2 signatures, never the "ssh-rsa"
    # pulumi-command asks for when the pinned key is an RSA key.
    status, output = fleet.container("box-1").exec_run(["sshd", "-T"])
    offered = next(line.split()[1] for line in output.decode().splitlines() if line.startswith("hostkeyalgorithms"))
    assert status == 0 and "rsa-sha2-512" in offered.split(",") and "ssh-rsa" not in offered.split(","), offered
    marker = f"/root/rsa-{uuid.uuid4().hex[:8]}"
    with pytest.raises(UpdateFailedError) as failed:
        new_stack().up(touch(fleet, host_key(fleet, "box-1", "rsa"), marker))
    assert ("ssh: handshake failed: ssh: no common algorithm for host key; we offered: [ssh-rsa]"
            in str(failed.value)), str(failed.value)
    assert not exists(fleet, marker)
