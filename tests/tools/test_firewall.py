"""The host firewall in real nftables (Debian trixie): every rendered ruleset passes `nft -c`, and the firewall step
loaded on a host lets the sources that need a port in, drops the others, keeps SSH and established connections,
refuses a ruleset that would lock the deployment out, and its removal leaves no pgha table."""

from __future__ import annotations

import copy
import os
from collections.abc import Iterator
from ipaddress import IPv4Network
from typing import Any

import pytest

from config import parse
from render.firewall import render_firewall
from targets.firewall import exact_script, firewall_script, removal_script
from tests.golden_util import remap, variant_raw
from tests.tools import docker_boxes
from tests.tools.docker_boxes import LABEL, TIMEOUT_SCALE, Container, docker, wait_for

pytestmark = pytest.mark.tools

IMAGE = "pgha-tools-nft:test"
NETWORK = "pgha-tools-firewall"
PREFIX = "pgha-tools-fw-"
SUBNET = IPv4Network(os.environ.get("PGHA_TOOLS_FIREWALL_SUBNET", "10.232.0.0/24"))
STRANGER = 99  # host number of a box that is no host of the stack
# The node image (Debian trixie, python3, curl) with the nftables the hosts install.
DOCKERFILE = (f"FROM {docker_boxes.IMAGE}\nRUN apt-get update && apt-get install -y --no-install-recommends nftables "
              "&& rm -rf /var/lib/apt/lists/*\n")
# Real hosts run systemd; here the step's systemctl calls are recorded instead.
SYSTEMCTL = "#!/bin/sh\necho \"$*\" >> /tmp/systemctl.log\n"
# A TCP echo service on every port given: what a cluster's service would be, as far as the firewall can tell.
ECHO = """import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind(("0.0.0.0", port)); s.listen()
    while True:
        c, _ = s.accept()
        threading.Thread(target=lambda c=c: [c.sendall(d) for d in iter(lambda: c.recv(64), b"")], daemon=True).start()
for p in sys.argv[1:]:
    threading.Thread(target=serve, args=(int(p),), daemon=True).start()
threading.Event().wait()
"""
# Connects, echoes once; with a go-file, keeps the connection until the file exists and echoes again on it.
PROBE = """import os, socket, sys, time
host, port, go = sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None
try:
    s = socket.create_connection((host, port), timeout=float(os.environ.get("T", "2")))
    s.sendall(b"ping"); assert s.recv(4) == b"ping"
    if go:
        print("open", flush=True)
        end = time.monotonic() + 60
        while not os.path.exists(go) and time.monotonic() < end: time.sleep(0.1)
        s.sendall(b"pong"); assert s.recv(4) == b"pong"
    print("answered")
except socket.timeout:
    print("dropped")
except OSError as e:
    print("refused" if isinstance(e, ConnectionRefusedError) else f"error {e}")
"""


def _remove_ours() -> None:
    """This module's containers and network, whatever an earlier run left (by name: the tools' label is shared
    with other modules, whose boxes may be running)."""
    ours = docker("ps", "-aq", "--filter", f"name=^{PREFIX}").stdout.split()
    if ours:
        docker("rm", "-f", *ours)
    docker("network", "rm", NETWORK, check=False)


@pytest.fixture(scope="module")
def nft_env() -> Iterator[str]:
    """The nftables image and this module's own network (labelled, like every box of the tools tests)."""
    docker_boxes.require_engine()
    docker_boxes.ensure_image()
    docker("build", "-q", "--label", LABEL, "-t", IMAGE, "-", stdin=DOCKERFILE.encode(), timeout=600)
    _remove_ours()
    docker("network", "create", "--internal", "--label", LABEL, "--subnet", str(SUBNET), NETWORK)
    try:
        yield IMAGE
    finally:
        _remove_ours()


def box(name: str, host: int, image: str) -> Container:
    """A container at host number `host` of the network, allowed to change its own nftables (NET_ADMIN)."""
    docker("run", "-d", "--label", LABEL, "--name", f"{PREFIX}{name}", "--network", NETWORK,
           "--ip", str(SUBNET.network_address + host), "--cap-add", "NET_ADMIN", "--stop-timeout", "1", image,
           "sleep", "infinity")
    container = Container(f"{PREFIX}{name}")
    container.put({"/tmp/echo.py": ECHO, "/tmp/probe.py": PROBE})
    container.put({"/usr/local/bin/systemctl": SYSTEMCTL}, mode=0o755)
    return container


def config(moved: dict[str, int] | None = None, **firewall: Any) -> Any:
    """The prod stack moved onto this module's network, with these firewall settings (and PostgreSQL nodes
    `moved` to other host numbers)."""
    raw = remap(copy.deepcopy(variant_raw("prod")), SUBNET)
    raw["firewall"] = {**raw.get("firewall", {}), **firewall}
    keys = raw["ssh"]["host_keys"]
    for node in raw["postgres"]["nodes"]:
        if node["name"] in (moved or {}):
            old, node["address"] = node["address"], str(SUBNET.network_address + (moved or {})[node["name"]])
            keys[node["address"]] = keys[old]  # the machine at the new address (its key pinned as the stack's)
    return parse(raw)


def check(container: Container, ruleset: str) -> Any:
    return container.exec("bash", "-c", "nft -c -f - <<'EOF'\n" + ruleset + "EOF\n")


def probe(source: Container, target: str, port: int, go: str | None = None) -> str:
    timeout = str(2 * TIMEOUT_SCALE)
    return source.exec("python3", "/tmp/probe.py", target, str(port), *([go] if go else []),
                       env={"T": timeout}).stdout.strip()


def test_every_rendered_ruleset_passes_nft_check(nft_env: str) -> None:
    checker = box("check", 200, nft_env)
    try:
        co_located = copy.deepcopy(variant_raw("prod"))
        co_located["etcd"]["members"][0]["address"] = co_located["haproxy"]["nodes"][0]["address"]
        co_located["firewall"] = {"ssh_from": ["0.0.0.0/0", "::/0"], "ssh_ports": [22, 2222],
                                  "allow": [{"port": 9100, "sources": ["10.9.0.5/32", "2001:db8::/32"]},
                                            {"port": 161, "protocol": "udp", "sources": ["10.9.0.0/24"]}]}
        for cfg in (config(), parse(co_located)):
            for host in cfg.all_hosts():
                text = render_firewall(cfg, host.address)
                result = check(checker, text)
                assert result.returncode == 0, f"{host.name}: {result.stderr}\n{text}"
        # The check can fail: a port out of range, and a rule's comment longer than nftables takes (the renderer's
        # comments name the port's field and its sources, within the limit).
        good = render_firewall(config(), config().postgres.nodes[0].address)
        broken = check(checker, good.replace("tcp dport 5432", "tcp dport 99999"))
        assert broken.returncode != 0 and "99999" in broken.stderr, broken
        wordy = good.replace('comment "postgres.port', f'comment "{"x" * 120} postgres.port')
        assert wordy != good
        refused = check(checker, wordy)
        assert refused.returncode != 0 and "comment" in refused.stderr.lower(), refused
        assert "pgha" not in checker.exec("nft", "list", "tables").stdout, "a check loads nothing"
    finally:
        docker("rm", "-f", checker.name, check=False)


def test_the_loaded_firewall_guards_the_hosts_ports(nft_env: str) -> None:
    cfg = config(ssh_from=[str(SUBNET)])
    node, member = cfg.postgres.nodes[0], cfg.postgres.nodes[1]
    host, peer, stranger = (box(n, int(a) % 256, nft_env) for n, a in
                            (("pg-1", node.address), ("pg-2", member.address), ("stranger", STRANGER)))
    try:
        # pg-1 "listens" on its role's ports, SSH, and a port of a role it does not have (etcd's client port).
        host.exec("bash", "-c", "nohup python3 /tmp/echo.py 22 5432 8008 2379 >/dev/null 2>&1 &")
        wait_for("the echo service", lambda: probe(host, "127.0.0.1", 2379) == "answered", 20, 0.2)
        target = str(node.address)
        # Positive control: before the firewall, a stranger reaches PostgreSQL's port.
        assert probe(stranger, target, 5432) == "answered"
        # The deployment's connection is checked first: one from an address outside ssh_from is refused.
        narrow = firewall_script(config(ssh_from=[f"{member.address}/32"]), node, "pgha-tools-pg-1-patroni")
        refused = host.exec("bash", "-c", narrow, env={"SSH_CONNECTION": f"{SUBNET.network_address + STRANGER} "
                                                                          f"50000 {target} 22"})
        assert refused.returncode == 1 and "refusing to load it" in refused.stderr, refused
        # Docker's own table (its DNS redirect, iptables-nft) stands for the admin's: pgha's never touches it.
        theirs = host.exec("nft", "list", "tables").stdout.split("\n")
        assert "table inet pgha" not in theirs, "nothing loaded after a refusal"
        # An open connection (the deployment's own) outlives the loading.
        go = "/tmp/go"
        stranger.exec("bash", "-c", f"nohup python3 /tmp/probe.py {target} 22 {go} >/tmp/held 2>&1 &")
        wait_for("the held connection", lambda: stranger.exec("cat", "/tmp/held").stdout.startswith("open"), 20, 0.2)
        script = firewall_script(cfg, node, "pgha-tools-pg-1-patroni")
        loaded = host.exec("bash", "-c", script, env={"SSH_CONNECTION": f"{SUBNET.network_address + STRANGER} "
                                                                        f"50000 {target} 22"})
        assert loaded.returncode == 0 and "pgha-firewall: loaded" in loaded.stdout, loaded
        assert "enable -q pgha-firewall.service" in host.exec("cat", "/tmp/systemctl.log").stdout
        assert host.exec("nft", "list", "tables").stdout.split("\n") == [*theirs[:-1], "table inet pgha", ""]
        stranger.exec("touch", go)
        wait_for("the held connection's answer", lambda: "answered" in stranger.exec("cat", "/tmp/held").stdout, 20)
        # The member gets in, the stranger is dropped (not refused: nothing answers), SSH stays open to both.
        assert probe(peer, target, 5432) == "answered"
        assert probe(peer, target, 8008) == "answered"
        assert probe(stranger, target, 5432) == "dropped"
        assert probe(stranger, target, 8008) == "dropped"
        assert probe(stranger, target, 22) == "answered"
        assert probe(peer, target, 2379) == "dropped", "no port of a role the host does not carry"
        # Run again, it loads nothing: the table is in place and the file unchanged.
        again = host.exec("bash", "-c", script)
        assert again.returncode == 0 and "loaded" not in again.stdout, again
        # pg-2 moves to another address: before the services change, the step only opens the new address (the
        # running member keeps its way in); at the deployment's end the ruleset, loaded whole, closes the old one.
        away = config(moved={"pg-2": 24}, ssh_from=[str(SUBNET)])
        widened = host.exec("bash", "-c", firewall_script(away, node, "pgha-tools-pg-1-patroni"), check=True)
        assert "opened what this deployment adds" in widened.stdout, widened
        assert probe(peer, target, 5432) == "answered"
        assert "ip saddr { 10.232.0.21, 10.232.0.23, 10.232.0.24," in host.exec("nft", "list", "ruleset").stdout
        exact = host.exec("bash", "-c", exact_script(away, node), check=True)
        assert "loaded whole" in exact.stdout
        assert probe(peer, target, 5432) == "dropped"
        host.exec("bash", "-c", exact_script(cfg, node), check=True)  # and back
        assert probe(peer, target, 5432) == "answered"
        # Another service on the host claims it too: the first one's removal keeps it, the last one's removes it.
        host.exec("bash", "-c", firewall_script(cfg, node, "pgha-tools-pg-1-other"), check=True)
        kept = host.exec("bash", "-c", removal_script("pgha-tools-pg-1-patroni"), check=True)
        assert "kept for pgha-tools-pg-1-other" in kept.stdout
        assert probe(stranger, target, 5432) == "dropped"
        removed = host.exec("bash", "-c", removal_script("pgha-tools-pg-1-other"), check=True)
        assert "removed table inet pgha" in removed.stdout
        assert host.exec("nft", "list", "tables").stdout.split("\n") == theirs, "only pgha's table went"
        assert host.exec("bash", "-c", "ls /etc/pgha/firewall.nft /etc/systemd/system/pgha-firewall.service "
                                       "/etc/pgha/firewall.d 2>&1").returncode != 0
        assert probe(stranger, target, 5432) == "answered"
    finally:
        docker("rm", "-f", host.name, peer.name, stranger.name, check=False)
