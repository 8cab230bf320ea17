"""Benchmarks that deploy the dev stack for real and print tables (docs/BENCHMARKS.md)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from local_engine import Stack

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def dev_stack(cluster: str) -> Iterator[Stack]:
    """`Pulumi.dev.yaml` deployed for real (leftovers of an earlier run removed first), destroyed at the end."""
    import program
    from local_engine import Stack
    from local_engine.docker_engine import remove_labelled

    remove_labelled(f"pgha.cluster={cluster}")
    stack = Stack("dev", ROOT, project="pgha")
    stack.up(program.main)
    try:
        yield stack
    finally:
        stack.destroy()
