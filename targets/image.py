"""The node image of the docker target: its build context, build arguments and a tag that follows both."""

from __future__ import annotations

import hashlib
from pathlib import Path

from catalog.roles import image_packages

ROOT = Path(__file__).resolve().parent.parent
# Relative to the project directory, where Pulumi runs the program: the same inputs from any checkout.
CONTEXT = "image"
DOCKERFILE = f"{CONTEXT}/Dockerfile"
REPOSITORY = "pgha-node"


def build_args(base_image: str, revision: int = 0) -> dict[str, str]:
    """The Dockerfile's build arguments: the base image and every role's packages (catalog/roles.py), and a
    revision above 0 (a new one runs apt again: the packages Debian ships now)."""
    args = {"BASE_IMAGE": base_image, "PACKAGES": " ".join(image_packages())}
    return {**args, "PGHA_IMAGE_REVISION": str(revision)} if revision else args


def image_tag(base_image: str, revision: int = 0) -> str:
    """A tag that changes whenever the build context or the build arguments change, so containers follow."""
    digest = hashlib.sha256()
    context = ROOT / CONTEXT
    for path in sorted(context.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(context).as_posix().encode())
            digest.update(path.read_bytes())
    for key, value in sorted(build_args(base_image, revision).items()):
        digest.update(f"{key}={value}\n".encode())
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"
