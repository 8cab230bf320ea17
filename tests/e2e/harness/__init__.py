"""End-to-end harness: deploy the unmodified Pulumi program on a real Docker engine.

``deploy()`` runs the program under the SDK's mock runtime with ``RealMocks``, which creates every
declared network, volume, image, container and random value for real. See README-style notes in
``deploy.py`` (outputs, config) and ``containers.py`` (supported container inputs).
"""

from .deploy import Deployment, DeploymentFailedError, deploy, keep_requested, stack_config
from .engine import engine_problem, require_engine
from .real_mocks import CreatedResource, RealMocks, ResourceCreationError, cleanup_leftovers, docker_client
from .values import RUN_LABEL, HarnessError, UnsupportedInputError

__all__ = [
    "RUN_LABEL", "CreatedResource", "Deployment", "DeploymentFailedError", "HarnessError", "RealMocks",
    "ResourceCreationError", "UnsupportedInputError", "cleanup_leftovers", "deploy", "docker_client", "engine_problem",
    "keep_requested", "require_engine", "stack_config",
]
