"""Fixtures for renderer tests: stack configs, fake credentials and golden-file comparison."""

from __future__ import annotations

import copy
import difflib
import os
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

import yaml

from config import ClusterConfig, parse
from render.credentials import Credentials

ROOT = Path(__file__).resolve().parents[1]
GOLDEN_DIR = Path(__file__).resolve().parent / "golden"
VARIANTS = ("dev", "prod", "large")

# Every secret holds characters that break DSNs, unquoted YAML, shell words and config tokenizers.
AWKWARD = ":@/?#%'\" \\$"
FAKE_CREDS = Credentials(
    superuser=f"super user{AWKWARD}1",
    replication=f"repl user{AWKWARD}2",
    rewind=f"rewind user{AWKWARD}3",
    app=f"app user{AWKWARD}4",
    readonly=f"ro user{AWKWARD}5",
    restapi=f"rest api{AWKWARD}6",
    # keepalived uses the first 8 characters, which must be plain; the rest proves truncation.
    keepalived=f"Kp4x9Zq2 ignored{AWKWARD}",
    stats=f"stats pw{AWKWARD}7",
    cipher=f"cipher pass{AWKWARD}8",
    # etcdctl reads it as one word from its standard input: awkward, but without white space.
    etcd=f"etcdpw{AWKWARD.replace(' ', '')}9",
    dcs_namespace="3f9a2c7e1b",
)


def stack_raw(stack: str) -> dict[str, Any]:
    """The `pgha:` keys of Pulumi.<stack>.yaml, namespace stripped, as plain python values."""
    data = yaml.safe_load((ROOT / f"Pulumi.{stack}.yaml").read_text())
    return {k.removeprefix("pgha:"): v for k, v in data["config"].items() if k.startswith("pgha:")}


def large_raw() -> dict[str, Any]:
    """The dev stack grown to 5 etcd members, 5 PostgreSQL and 3 HAProxy nodes, with the other modes."""
    raw = copy.deepcopy(stack_raw("dev"))
    raw["name"] = "pgha-large"
    raw["timing_profile"] = "conservative"
    raw["etcd"]["members"] = [{"name": f"etcd-{i}", "address": f"10.89.0.{10 + i}"} for i in range(1, 6)]
    raw["postgres"]["nodes"] = [{"name": f"pg-{i}", "address": f"10.89.0.{20 + i}"} for i in range(1, 6)]
    raw["postgres"]["client_cidrs"] = ["10.89.0.128/25", "172.16.0.0/12"]
    raw["postgres"]["database"] = "orders"
    raw["haproxy"]["nodes"] = [{"name": f"haproxy-{i}", "address": f"10.89.0.{30 + i}"} for i in range(1, 4)]
    raw["haproxy"]["virtual_ip"] = "10.89.0.40"
    raw["haproxy"]["virtual_router_id"] = 42
    raw["patroni"] = {"synchronous_mode": "quorum", "synchronous_node_count": 2, "rest_api_port": 8009}
    raw["backup"] = {"cipher_type": "none", "compress_type": "none", "incr_schedule": "0 */6 * * *"}
    return raw


def variant_raw(variant: str) -> dict[str, Any]:
    """Raw config of a test variant: one of VARIANTS."""
    return large_raw() if variant == "large" else stack_raw(variant)


def load(variant: str) -> ClusterConfig:
    """The validated config of a test variant."""
    return parse(variant_raw(variant))


def remap(raw: dict[str, Any], subnet: IPv4Network) -> dict[str, Any]:
    """`raw` with every host address and the virtual IP moved into `subnet`, keeping the host part."""
    size = subnet.num_addresses

    def move(value: Any) -> Any:
        if isinstance(value, dict):  # keys too: ssh.host_keys is keyed by address
            return {move(k): (str(subnet) if k == "subnet" else move(v)) for k, v in value.items()}
        if isinstance(value, list):
            return [move(v) for v in value]
        if isinstance(value, str):
            try:
                address = IPv4Address(value)
            except ValueError:
                return value
            if address.is_loopback:
                return value
            return str(subnet.network_address + int(address) % size)
        return value

    return move(copy.deepcopy(raw))


def assert_golden(name: str, text: str) -> None:
    """Compare `text` with tests/golden/<name>; UPDATE_GOLDEN=1 rewrites the file instead."""
    path = GOLDEN_DIR / name
    if os.environ.get("UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return
    assert path.exists(), f"golden file {path} is missing; run with UPDATE_GOLDEN=1 to create it"
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True), text.splitlines(keepends=True), str(path), "rendered"
            )
        )
        raise AssertionError(f"rendered text differs from {path} (UPDATE_GOLDEN=1 to accept):\n{diff}")
