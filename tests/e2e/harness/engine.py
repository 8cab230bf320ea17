"""Is a Docker engine usable? Skip e2e tests without one, except on CI (``CI=true``) where they fail."""

from __future__ import annotations

import os

import docker
from docker import errors as docker_errors

BASE_IMAGE = "debian:trixie-slim"


def engine_problem(images: tuple[str, ...] = (BASE_IMAGE,)) -> str | None:
    """None if the engine answers and holds ``images``; otherwise why not."""
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except (docker_errors.DockerException, OSError) as exc:
        return f"no Docker engine reachable ({exc})"
    for image in images:
        try:
            client.images.get(image)
        except docker_errors.ImageNotFound:
            return f"base image {image} missing (no registry here: import it, see ENVIRONMENT.md)"
    return None


def require_engine(images: tuple[str, ...] = (BASE_IMAGE,)) -> None:
    """pytest helper: skip with the reason, or fail when the environment variable CI is "true"."""
    import pytest

    problem = engine_problem(images)
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"e2e test needs Docker but CI=true: {problem}", pytrace=False)
    pytest.skip(problem)
