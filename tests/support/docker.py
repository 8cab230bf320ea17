"""Docker for the tests: skip without an engine, except on CI (``CI=true``), where a missing engine fails."""

from __future__ import annotations

import os

import pytest

from config.models import DockerSettings
from local_engine.docker_engine import engine_problem

BASE_IMAGE = DockerSettings().base_image


def require_engine(images: tuple[str, ...] = (BASE_IMAGE,)) -> None:
    """Skip with the reason, or fail when the environment variable CI is "true"."""
    problem = engine_problem(images)
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"this test needs Docker but CI=true: {problem}", pytrace=False)
    pytest.skip(problem)


def keep_requested() -> bool:
    """True when ``PGHA_E2E_KEEP=1``: leave what the tests deployed, for debugging."""
    return os.environ.get("PGHA_E2E_KEEP") == "1"
