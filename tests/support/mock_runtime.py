"""Run the pgha program under Pulumi's mock runtime: re-exports the evaluator the offline policy check uses."""

from __future__ import annotations

import base64
import re

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
    "is_secret",
    "reveal",
    "run_program",
    "stack_config",
]


def deps(graph: Graph, name: str) -> list[str]:
    """The names of the registered resources resource `name` depends on directly."""
    found = graph.named(name).dependencies
    return [r.name for r in graph.resources if r.urn in found]


# A stand-in for the secret pgha:sshPrivateKey of the prod stack (never used to connect).
SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\ntest-only\n-----END OPENSSH PRIVATE KEY-----\n"

_WRITTEN = re.compile(r"<<'PGHA_EOF'\n(.*?)\nPGHA_EOF\n.*?install -D -m \S+ -o \S+ -g \S+ \"\$tmp\" (\S+)\n", re.S)


def converge_files(script: str) -> dict[str, str]:
    """Path -> content of every file a converge script (targets/converge.py) writes."""
    return {path: base64.b64decode(data).decode() for data, path in _WRITTEN.findall(script)}
