"""The virtual IP's handover with real keepalived, HAProxy and TCP: a client waiting for an answer when the
address moves is told its connection ended, instead of waiting for an answer that can no longer reach it.

Two HAProxy nodes run the rendered keepalived.conf and check script. HAProxy runs a small configuration with the
rendered listener names and admin socket (the rendered one needs Patroni to check), in front of a server that
answers each request after ANSWER_DELAY_S. A client on a third box sends a request, and the address moves while
the answer is on its way."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator

import pytest

from config.models import ClusterConfig, Host
from operations.upgrade import render_vip_handover
from render.haproxy import READ_ONLY, READ_WRITE
from render.keepalived import render_haproxy_ready, render_keepalived
from render.paths import HAPROXY_READY_SCRIPT, HAPROXY_SOCKET, KEEPALIVED_CONFIG, VIP_RELEASE
from tests.golden_util import FAKE_CREDS
from tests.tools import docker_boxes
from tests.tools.docker_boxes import Container, ToolsEnv, variant_config

pytestmark = pytest.mark.tools

VARIANT = "prod"  # its HAProxy addresses are no other tool test's
ANSWER_DELAY_S = 3
BACKEND_PORT = 5433
HAPROXY_TEST_CONFIG = "/etc/haproxy/handover-test.cfg"
SERVER = "/usr/local/bin/pgha-slow-echo"
CLIENT = "/usr/local/bin/pgha-waiting-client"

SLOW_ECHO = f"""#!/usr/bin/env python3
import socketserver, time
class Slow(socketserver.BaseRequestHandler):
    def handle(self):
        while data := self.request.recv(64):
            time.sleep({ANSWER_DELAY_S})
            self.request.sendall(data)
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", {BACKEND_PORT}), Slow).serve_forever()
"""

# argv: address port name wait_s. Writes /tmp/<name>.sent once the request is out, then /tmp/<name>.json with
# what came back: the answer, the connection closed or reset, or silence for wait_s.
WAITING_CLIENT = """#!/usr/bin/env python3
import json, os, socket, sys, time
address, port, name, wait_s = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
conn = socket.create_connection((address, port), timeout=5)
conn.sendall(b"ping")
open(f"/tmp/{name}.sent", "w").close()
began = time.monotonic()
conn.settimeout(wait_s)
try:
    data = conn.recv(64)
    result = {"outcome": "answer" if data else "closed", "data": data.decode()}
except socket.timeout:
    result = {"outcome": "silence"}
except OSError as error:
    result = {"outcome": "reset", "error": str(error)}
result["seconds"] = round(time.monotonic() - began, 2)
with open(f"/tmp/{name}.tmp", "w") as out:
    json.dump(result, out)
os.rename(f"/tmp/{name}.tmp", f"/tmp/{name}.json")
"""


def haproxy_test_config(cfg: ClusterConfig) -> str:
    ha = cfg.haproxy
    listeners = "".join(
        f"listen {name}\n    bind *:{port}\n    server backend 127.0.0.1:{BACKEND_PORT}\n"
        for name, port in ((READ_WRITE, ha.read_write_port), (READ_ONLY, ha.read_only_port)))
    return (f"global\n    stats socket {HAPROXY_SOCKET} mode 600 level admin\n"
            "defaults\n    mode tcp\n    timeout connect 2s\n    timeout client 10m\n    timeout server 10m\n"
            f"{listeners}")


class Pair:
    """Two HAProxy nodes sharing the virtual IP, and a client box."""

    def __init__(self, cfg: ClusterConfig, nodes: dict[str, Container], client: Container) -> None:
        self.cfg, self.nodes, self.client = cfg, nodes, client
        self.vip = str(cfg.haproxy.virtual_ip)

    def holders(self) -> list[str]:
        return [name for name, box in self.nodes.items()
                if f" {self.vip}/" in box.exec("ip", "-o", "-4", "addr", "show", check=True).stdout]

    def holder(self) -> str:
        docker_boxes.wait_for("one node holds the virtual IP", lambda: len(self.holders()) == 1, deadline_s=30)
        return self.holders()[0]

    def send(self, name: str, wait_s: float) -> None:
        """A client request through the read-write port, its answer awaited in the background."""
        self.client.exec("rm", "-f", f"/tmp/{name}.sent", f"/tmp/{name}.json", check=True)
        docker_boxes.docker("exec", "-d", self.client.name, CLIENT, self.vip, str(self.cfg.haproxy.read_write_port),
                            name, str(wait_s))
        docker_boxes.wait_for(f"{name}: the request is out", lambda: self.client.exec(
            "test", "-e", f"/tmp/{name}.sent").returncode == 0, deadline_s=10, interval_s=0.1)

    def outcome(self, name: str, deadline_s: float) -> dict[str, object]:
        docker_boxes.wait_for(f"{name}: the client's result", lambda: self.client.exec(
            "test", "-e", f"/tmp/{name}.json").returncode == 0, deadline_s=deadline_s, interval_s=0.2)
        result: dict[str, object] = json.loads(self.client.exec("cat", f"/tmp/{name}.json", check=True).stdout)
        return result

    def hand_over(self, node: str) -> subprocess.CompletedProcess[str]:
        """The rendered handover script, run on `node` as the program runs it."""
        return docker_boxes.docker("exec", "-i", self.nodes[node].name, "bash", "-s",
                                   stdin=render_vip_handover(self.cfg, node).encode(), check=False, timeout=90)

    def ready(self, node: str) -> int:
        return self.nodes[node].exec(HAPROXY_READY_SCRIPT).returncode


@pytest.fixture(scope="module")
def pair(tools_env: ToolsEnv) -> Iterator[Pair]:
    cfg = variant_config(VARIANT)
    started: list[Container] = []
    try:
        boxes: dict[str, Container] = {}
        for node in cfg.haproxy.nodes:
            boxes[node.name] = start_node(cfg, node, tools_env)
            started.append(boxes[node.name])
        client = docker_boxes.start("pgha-tools-vip-client", network=tools_env.network,
                                    files={CLIENT: WAITING_CLIENT})
        started.append(client)
        client.exec("chmod", "0755", CLIENT, check=True)
        yield Pair(cfg, boxes, client)
    finally:
        for box in started:
            docker_boxes.docker("rm", "-f", box.name, check=False)


def start_node(cfg: ClusterConfig, node: Host, tools_env: ToolsEnv) -> Container:
    box = docker_boxes.start(
        f"pgha-tools-vip-{node.name}", network=tools_env.network, ip=str(node.address),
        capabilities=("NET_ADMIN", "NET_BROADCAST", "NET_RAW"),
        files={KEEPALIVED_CONFIG: render_keepalived(cfg, node, FAKE_CREDS),
               HAPROXY_TEST_CONFIG: haproxy_test_config(cfg)})
    box.put({HAPROXY_READY_SCRIPT: render_haproxy_ready(), SERVER: SLOW_ECHO}, mode=0o755)
    box.exec("mkdir", "-p", HAPROXY_SOCKET.rsplit("/", 1)[0], check=True)
    docker_boxes.docker("exec", "-d", box.name, SERVER)
    box.exec("haproxy", "-D", "-f", HAPROXY_TEST_CONFIG, check=True)
    box.exec("keepalived", "-l", "-D", "-f", KEEPALIVED_CONFIG, check=True)
    return box


def test_an_address_moved_under_a_waiting_client_leaves_it_waiting(pair: Pair) -> None:
    # The positive control: the address leaves the node the answer comes from (its keepalived check fails, as
    # the handover's release file makes it), and nothing ends the session first. The answer is lost, and the
    # client, which has nothing to send, never hears from the new holder either.
    holder = pair.holder()
    pair.send("control", wait_s=ANSWER_DELAY_S + 8)
    release = f"echo $(( $(date +%s) + 20 )) > {VIP_RELEASE}"
    pair.nodes[holder].exec("bash", "-c", release, check=True)
    docker_boxes.wait_for("the address moves", lambda: pair.holders() not in ([], [holder]), deadline_s=15,
                          interval_s=0.1)
    assert pair.outcome("control", deadline_s=ANSWER_DELAY_S + 15)["outcome"] == "silence"
    pair.nodes[holder].exec("rm", "-f", VIP_RELEASE, check=True)


def test_the_handover_ends_the_waiting_session_before_the_address_moves(pair: Pair) -> None:
    holder = pair.holder()
    pair.send("handover", wait_s=ANSWER_DELAY_S + 8)
    handover = pair.hand_over(holder)
    assert handover.returncode == 0, handover.stdout + handover.stderr
    assert f"{holder} paused its listeners and ended 1 client session(s)" in handover.stdout, handover.stdout
    result = pair.outcome("handover", deadline_s=10)
    assert result["outcome"] in ("closed", "reset") and float(str(result["seconds"])) < ANSWER_DELAY_S, result
    # The client dials again and the new holder answers.
    new = pair.holder()
    assert new != holder
    pair.send("after", wait_s=ANSWER_DELAY_S + 5)
    assert pair.outcome("after", deadline_s=ANSWER_DELAY_S + 10) == {
        "outcome": "answer", "data": "ping", "seconds": pytest.approx(ANSWER_DELAY_S, abs=1)}
    # The old holder's listeners stay paused: its check fails even once the release time is over, so it cannot
    # take the address back into a listener that refuses; resumed, it passes.
    pair.nodes[holder].exec("rm", "-f", VIP_RELEASE, check=True)
    assert pair.ready(holder) == 1
    for name in (READ_WRITE, READ_ONLY):
        pair.nodes[holder].exec("bash", "-c", f"echo 'enable frontend {name}' | socat stdio "
                                f"unix-connect:{HAPROXY_SOCKET}", check=True)
    assert pair.ready(holder) == 0


def test_a_handover_no_peer_takes_resumes_the_listeners(pair: Pair) -> None:
    holder = pair.holder()
    peer = next(name for name in pair.nodes if name != holder)
    pair.nodes[peer].exec("pkill", "-x", "keepalived", check=True)
    try:
        handover = pair.hand_over(holder)
        assert handover.returncode == 1
        assert f"{holder} takes it back and is not replaced" in handover.stderr, handover.stderr
        assert pair.holder() == holder, "its check passes again: it takes the address back"
        assert pair.ready(holder) == 0, "the listeners are open again and the release file is gone"
        pair.send("kept", wait_s=ANSWER_DELAY_S + 5)
        assert pair.outcome("kept", deadline_s=ANSWER_DELAY_S + 10)["outcome"] == "answer"
    finally:
        pair.nodes[peer].exec("keepalived", "-l", "-D", "-f", KEEPALIVED_CONFIG, check=False)


def test_an_advert_from_a_stranger_moves_nothing(pair: Pair, tools_env: ToolsEnv) -> None:
    # A stranger on the segment runs keepalived for the same router ID with a higher priority, its adverts sent
    # to both nodes (VRRP PASS is clear text: it knows the password). The nodes drop them (check_unicast_src):
    # one of them keeps the address. The control: without that setting both step down before the stranger.
    # (What no VRRP setting stops: the stranger claiming the address on its own side of the segment.)
    own = {name: box.exec("cat", KEEPALIVED_CONFIG, check=True).stdout for name, box in pair.nodes.items()}
    assert all("    check_unicast_src\n" in text for text in own.values())
    template = next(iter(own.values()))
    rogue_address = str(docker_boxes.BLOCKS[VARIANT].network_address + 60)
    peers = "".join(f"        {n.address}\n" for n in pair.cfg.haproxy.nodes)
    rogue = re.sub(r"unicast_src_ip \S+", f"unicast_src_ip {rogue_address}", template)
    rogue = re.sub(r"unicast_peer \{[^}]*\}", "unicast_peer {\n" + peers + "    }", rogue)
    rogue = re.sub(r"priority \d+", "priority 250", rogue).replace("    nopreempt\n", "")
    rogue = re.sub(r"    track_script \{[^}]*\}\n", "", rogue).replace("    check_unicast_src\n", "")

    def restart_all(configs: dict[str, str]) -> None:
        for name, box in pair.nodes.items():
            box.exec("pkill", "-x", "keepalived")

            def gone(box: Container = box) -> bool:
                # Zombies do not count: the box's init (sleep) reaps nothing.
                return box.exec("pgrep", "-r", "D,R,S,T", "-x", "keepalived").returncode != 0

            docker_boxes.wait_for(f"{name}: keepalived gone", gone, deadline_s=10, interval_s=0.2)
            box.put({KEEPALIVED_CONFIG: configs[name]})
            box.exec("keepalived", "-l", "-D", "-f", KEEPALIVED_CONFIG, check=True)

    pair.holder()
    stranger = docker_boxes.start("pgha-tools-vip-stranger", network=tools_env.network, ip=rogue_address,
                                  capabilities=("NET_ADMIN", "NET_BROADCAST", "NET_RAW"),
                                  files={KEEPALIVED_CONFIG: rogue})
    try:
        stranger.exec("keepalived", "-l", "-D", "-f", KEEPALIVED_CONFIG, check=True)
        with pytest.raises(AssertionError):  # for 8 s, never a moment without a node of the pair holding it
            docker_boxes.wait_for("the pair gives the address up", lambda: not pair.holders(), deadline_s=8,
                                  interval_s=0.2)
        restart_all({name: text.replace("    check_unicast_src\n", "") for name, text in own.items()})
        docker_boxes.wait_for("without check_unicast_src the stranger's adverts win", lambda: not pair.holders(),
                              deadline_s=20, interval_s=0.2)
    finally:
        docker_boxes.docker("rm", "-f", stranger.name, check=False)
        restart_all(own)
    pair.holder()
