"""etcd membership changes with real etcd, through the files and scripts the program installs: members join a
running cluster as learners and are promoted by their health check, members the stack no longer has are
removed one at a time (a majority never), and a member rebuilt empty under its name, or moved to a new address
(empty, or with its data), replaces its old identity.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from config import parse
from config.models import ClusterConfig
from operations.etcd import render_prune
from render.paths import ETCD_HEALTH_SCRIPT, ETCD_START_SCRIPT
from tests.golden_util import remap, variant_raw
from tests.tools import docker_boxes
from tests.tools.conftest import ETCDCTL, etcd_files, local_endpoint
from tests.tools.docker_boxes import BLOCKS, ToolsEnv, variant_config

# Host numbers of the dev block the variant's own cluster does not use.
pytestmark = pytest.mark.tools

HOSTS = (41, 42, 43, 44, 45)
LOCAL = local_endpoint(variant_config("dev").etcd.client_port)


def _config(numbers: tuple[int, ...], name: str = "pgha-members", moved: dict[int, int] | None = None
            ) -> ClusterConfig:
    """The dev variant with etcd members etcd-N at host number N (or at `moved[N]`)."""
    raw: dict[str, Any] = variant_raw("dev")
    at = moved or {}
    members = [{"name": f"etcd-{n}", "address": f"10.89.0.{at.get(n, n)}"} for n in numbers]
    raw = {**raw, "name": name, "etcd": {**raw["etcd"], "members": members}}
    return parse(remap(raw, BLOCKS["dev"]))


def _members(box: docker_boxes.Container, port: int) -> dict[str, dict[str, Any]]:
    listed = box.exec(*ETCDCTL, local_endpoint(port), "member", "list", "-w", "json", check=True)
    return {m.get("name", ""): m for m in json.loads(listed.stdout)["members"]}


def _healthy(box: docker_boxes.Container) -> bool:
    return box.exec("bash", ETCD_HEALTH_SCRIPT).returncode == 0


def _until_healthy(box: docker_boxes.Container, what: str) -> None:
    """Until `box` is a healthy voting member; failing with what its etcd said."""
    docker_boxes.wait_for_etcd(what, lambda: _healthy(box), [box])


def test_members_join_leave_and_replace_their_identity(tools_env: ToolsEnv) -> None:
    three, five = _config(HOSTS[:3]), _config(HOSTS)
    port = three.etcd.client_port
    boxes: dict[str, docker_boxes.Container] = {}

    def start(cfg: ClusterConfig, index: int) -> docker_boxes.Container:
        member = cfg.etcd.members[index]
        boxes[member.name] = docker_boxes.start(f"pgha-tools-members-{member.name}", ("bash", ETCD_START_SCRIPT),
                                                tools_env.network, str(member.address), etcd_files(cfg, member))
        return boxes[member.name]

    try:
        for i in range(3):
            start(three, i)
        first = boxes["etcd-41"]
        docker_boxes.wait_for("the first three members healthy", lambda: all(_healthy(b) for b in boxes.values()),
                              deadline_s=60)
        first.exec(*ETCDCTL, LOCAL, "put", "pgha-kept", "before", check=True)

        # 3 -> 5: each new member joins as a learner and is promoted by its health check once caught up.
        for index in (3, 4):
            box = start(five, index)
            name = five.etcd.members[index].name
            _until_healthy(box, f"{name} promoted and healthy")
            assert "joining the running cluster as a learner" in box.logs()
            assert "initial-cluster-state existing" in box.logs()
        members = _members(first, port)
        assert sorted(members) == [f"etcd-{n}" for n in HOSTS]
        assert not [n for n, m in members.items() if m.get("isLearner")], members
        assert boxes["etcd-45"].exec(*ETCDCTL, LOCAL, "get", "--print-value-only", "pgha-kept",
                                     check=True).stdout.strip() == "before"

        # A majority removed in one step is refused, and nothing is removed.
        majority = _config((41, 50, 51))
        refused = first.exec("bash", "-c", render_prune(majority))
        assert refused.returncode != 0 and "would remove a majority" in refused.stderr, refused
        assert len(_members(first, port)) == 5

        # 5 -> 3: the two members the stack no longer has are removed one at a time.
        pruned = first.exec("bash", "-c", render_prune(three), check=True)
        assert pruned.stdout.count("removing member") == 2, pruned.stdout
        assert sorted(_members(first, port)) == ["etcd-41", "etcd-42", "etcd-43"]
        again = first.exec("bash", "-c", render_prune(three), check=True)
        assert "nothing to remove" in again.stdout

        # A host rebuilt empty under the same name: its old identity is removed and it joins anew.
        old_id = _members(first, port)["etcd-43"]["ID"]
        docker_boxes.docker("rm", "-f", boxes["etcd-43"].name)
        rebuilt = start(three, 2)
        _until_healthy(rebuilt, "etcd-43 rebuilt, promoted and healthy")
        assert "removing that identity to join anew" in rebuilt.logs()
        members = _members(first, port)
        assert sorted(members) == ["etcd-41", "etcd-42", "etcd-43"] and members["etcd-43"]["ID"] != old_id
        assert rebuilt.exec(*ETCDCTL, LOCAL, "get", "--print-value-only", "pgha-kept",
                            check=True).stdout.strip() == "before"

        # The member moved to a new address (its host replaced by another machine): the identity at the old
        # address is removed, and the member joins from the new one.
        old_id = _members(first, port)["etcd-43"]["ID"]
        docker_boxes.docker("rm", "-f", boxes["etcd-43"].name)
        moved = start(_config(HOSTS[:3], moved={43: 46}), 2)
        _until_healthy(moved, "etcd-43 moved, promoted and healthy")
        assert "another address: removing that identity (the member moved)" in moved.logs()
        members = _members(first, port)
        assert sorted(members) == ["etcd-41", "etcd-42", "etcd-43"] and members["etcd-43"]["ID"] != old_id
        assert members["etcd-43"]["peerURLs"] == [f"https://{BLOCKS['dev'].network_address + 46}:2380"]
        assert moved.exec(*ETCDCTL, LOCAL, "get", "--print-value-only", "pgha-kept",
                            check=True).stdout.strip() == "before"

        # The control: the member restarted at the same address starts from its data, under its identity.
        old_id = _members(first, port)["etcd-43"]["ID"]
        docker_boxes.docker("restart", moved.name)
        _until_healthy(moved, "etcd-43 restarted and healthy")
        assert _members(first, port)["etcd-43"]["ID"] == old_id
        # The member moved again, with its data (a docker volume moves with its container): etcd would keep
        # announcing the old peer URL, so the data is set aside and the identity replaced.
        docker_boxes.docker("stop", moved.name)
        docker_boxes.docker("network", "disconnect", tools_env.network, moved.name)
        docker_boxes.docker("network", "connect", "--ip", str(BLOCKS["dev"].network_address + 47), tools_env.network,
                            moved.name)
        again_moved = _config(HOSTS[:3], moved={43: 47})
        moved.put(etcd_files(again_moved, again_moved.etcd.members[2]))
        docker_boxes.docker("start", moved.name)
        _until_healthy(moved, "etcd-43 moved with its data, promoted and healthy")
        assert "setting the data aside" in moved.logs(), moved.logs()
        members = _members(first, port)
        assert sorted(members) == ["etcd-41", "etcd-42", "etcd-43"] and members["etcd-43"]["ID"] != old_id
        assert members["etcd-43"]["peerURLs"] == [f"https://{BLOCKS['dev'].network_address + 47}:2380"]
        assert moved.exec(*ETCDCTL, LOCAL, "get", "--print-value-only", "pgha-kept",
                            check=True).stdout.strip() == "before"
    finally:
        for box in boxes.values():
            docker_boxes.docker("rm", "-f", box.name, check=False)
