"""Fixtures for the local engine's own tests: a throwaway project directory and a stack in it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local_engine import Stack


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project directory with an empty stack file for stack "t"."""
    (tmp_path / "Pulumi.t.yaml").write_text("config: {}\n")
    return tmp_path


@pytest.fixture
def new_stack(project: Path) -> Iterator[Callable[..., Stack]]:
    """Makes stacks of project "t" in the project directory; whatever they still hold is destroyed after."""
    made: list[Stack] = []

    def make(**kwargs: object) -> Stack:
        stack = Stack("t", project, project="t", log=lambda text: None, **kwargs)  # type: ignore[arg-type]
        made.append(stack)
        return stack

    yield make
    for stack in made:
        if stack.snapshot:
            stack.destroy()
