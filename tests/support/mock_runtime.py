"""Run the pgha program under Pulumi's mock runtime: re-exports the evaluator the offline policy check uses."""

from __future__ import annotations

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
    "FakeValues",
    "Graph",
    "RecordingMonitor",
    "Registration",
    "is_secret",
    "reveal",
    "run_program",
    "stack_config",
]
