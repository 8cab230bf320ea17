"""Run the pgha program under Pulumi's mock runtime: re-exports the evaluator the offline policy check uses."""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Iterable
from typing import Any

import yaml

from policy.evaluate import (
    ROOT,
    SECRET_SIG,
    SECRET_VALUE,
    FakeValues,
    Graph,
    RecordingMonitor,
    Registration,
    is_secret,
    reveal,
    run_program,
    stack_config,
)

__all__ = [
    "ROOT",
    "SECRET_SIG",
    "SECRET_VALUE",
    "SSH_KEY",
    "FakeValues",
    "Graph",
    "RecordingMonitor",
    "Registration",
    "converge_files",
    "deps",
    "example_host_key",
    "is_secret",
    "prod_ssh",
    "reveal",
    "run_program",
    "stack_config",
]


def deps(graph: Graph, name: str) -> list[str]:
    """The names of the registered resources resource `name` depends on directly."""
    found = graph.named(name).dependencies
    return [r.name for r in graph.resources if r.urn in found]


def example_host_key(address: str) -> str:
    """A well-formed ed25519 host key line made from `address` (a stand-in: no host holds it)."""
    blob = b"\x00\x00\x00\x0bssh-ed25519\x00\x00\x00\x20" + hashlib.sha256(address.encode()).digest()
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} example-{address}"


def prod_ssh(extra_hosts: Iterable[str] = (), **changes: Any) -> dict[str, Any]:
    """Pulumi.prod.yaml's `pgha:ssh` with `changes`, and example host keys for the `extra_hosts` addresses."""
    ssh = dict(yaml.safe_load((ROOT / "Pulumi.prod.yaml").read_text())["config"]["pgha:ssh"])
    ssh["host_keys"] = {**ssh["host_keys"], **{a: example_host_key(a) for a in extra_hosts}}
    return {**ssh, **changes}


# A stand-in for the secret pgha:sshPrivateKey of the prod stack (never used to connect).
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-only\n-----END OPENSSH PRIVATE KEY-----\n"

_WRITTEN = re.compile(r"<<'PGHA_EOF'\n(.*?)\nPGHA_EOF\n.*?install -D -m \S+ -o \S+ -g \S+ \"\$tmp\" (\S+)\n", re.S)


def converge_files(script: str) -> dict[str, str]:
    """Path -> content of every file a converge script (targets/converge.py) writes."""
    return {path: base64.b64decode(data).decode() for data, path in _WRITTEN.findall(script)}
