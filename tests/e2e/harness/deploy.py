"""Bring the unmodified Pulumi program up for real, without a Pulumi engine.

``deploy()`` loads the stack file's ``config:`` into the SDK's config map, installs ``RealMocks``
through ``pulumi.runtime.set_mocks`` (with a fresh root stack), runs the program function the way
``@pulumi.runtime.test`` does (``run_pulumi_func``: run it, then wait until every resource
registration and every pending Output has finished), and collects the stack outputs.

Stack outputs: ``pulumi.export(name, value)`` stores ``value`` in the root ``Stack`` resource's
``outputs`` dict (``Stack.output``). The mock monitor ignores ``RegisterResourceOutputs``, so the
harness reads that dict from ``pulumi.runtime.settings.get_root_resource()`` after the program
finished, converts each value like the SDK does for real stack outputs (``stack.massage``) and
awaits it: ``Deployment.outputs`` holds plain values, ``Deployment.secret_outputs`` the names of
outputs that are secret. An output that stays unknown is an error (the harness returned too little).

A second run of the program against what a first one made (``deploy(..., previous=first)``, where
``first`` is a ``Deployment`` or the ``DeploymentFailedError`` of a failed run) behaves like a second
``pulumi up``: random values and unchanged remote commands are kept, changed commands update. A
failed run never deletes what remote commands did (the engine would not either): the error
carries the state for the next run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.stack import massage, run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from policy.evaluate import stack_config

from .real_mocks import CreatedResource, RealMocks
from .ssh import RemoteCommands
from .values import HarnessError

# The SDK registers resources through loop.run_in_executor(None, ...). The default pool (cpu + 4
# threads) could hold every worker in a container health wait while the containers they need
# queue behind them (an etcd member is healthy only with its peers up); the engine has no such cap.
_EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="pgha-e2e")


def keep_requested() -> bool:
    """True when ``PGHA_E2E_KEEP=1``: leave what a failed deployment created, for debugging."""
    return os.environ.get("PGHA_E2E_KEEP") == "1"


@dataclass
class Deployment:
    """A deployed stack: resolved outputs, the creation log and a way to tear it down."""

    run_id: str
    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    mocks: RealMocks
    seconds: float
    resources: list[CreatedResource] = field(default_factory=list)

    @property
    def remote(self) -> RemoteCommands:
        """Recorded remote commands (inputs, state) and the executions this run made."""
        return self.mocks.remote

    def destroy(self, remove_images: bool = False) -> list[CreatedResource]:
        """Run the remote commands' deletes, then remove every container, volume and network of this
        run (images only if asked)."""
        return self.mocks.destroy(remove_images=remove_images)

    def __enter__(self) -> Deployment:
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


class DeploymentFailedError(HarnessError):
    """A deployment failed; ``mocks`` holds what it recorded, so a later run can follow it."""

    def __init__(self, message: str, mocks: RealMocks) -> None:
        super().__init__(message)
        self.mocks = mocks

    @property
    def remote(self) -> RemoteCommands:
        return self.mocks.remote


async def _resolve(raw: Mapping[str, Any]) -> tuple[dict[str, Any], set[str], list[str]]:
    values: dict[str, Any] = {}
    secret: set[str] = set()
    unknown: list[str] = []
    for name, value in raw.items():
        output = pulumi.Output.from_input(massage(value, []))
        if not await output.is_known():
            unknown.append(name)
        if await output.is_secret():
            secret.add(name)
        values[name] = await output.future()
    return values, secret, unknown


def _quiet_failed_futures(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Loop exception handler: a failed resource leaves one failed future per output property that
    nobody awaits; the failure is already reported by deploy(), so drop those GC-time warnings."""
    if isinstance(context.get("exception"), HarnessError) and "never retrieved" in context.get("message", ""):
        return
    loop.default_exception_handler(context)


def _drain(deadline_s: float = 900.0) -> None:
    """After a failure, let every outstanding registration finish (they fail fast once closed)."""
    deadline = time.monotonic() + deadline_s
    manager = settings.SETTINGS.rpc_manager
    while manager.rpcs and time.monotonic() < deadline:
        try:
            _sync_await(wait_for_rpcs())
            return
        except BaseException:
            if not manager.rpcs:
                return


def deploy(stack_file: Path, program: Callable[[], None], project: str = "pgha", stack: str = "dev",
           extra_config: Mapping[str, Any] | None = None, secret_keys: Collection[str] = (),
           *, workdir: Path | None = None, run_id: str | None = None,
           extra_labels: Mapping[str, str] | None = None,
           previous: Deployment | DeploymentFailedError | None = None) -> Deployment:
    """Run ``program`` against real Docker and return the resulting ``Deployment``.

    ``program`` must declare the resources when called (import-time-only code does not run again
    for a module that is already imported). It runs with the working directory set to ``workdir``
    (default: the stack file's directory, where Pulumi.yaml lives), which is also the base for
    relative build contexts and upload sources. ``secret_keys`` are full config keys
    ("pgha:sshPrivateKey") to mark secret; ``secure:`` keys of the stack file always are.
    On any failure every Docker object already created is removed (unless ``PGHA_E2E_KEEP=1``) and
    a ``DeploymentFailedError`` naming the failed resources and causes is raised; remote commands are
    never undone on failure (pass the error as ``previous`` to run again). ``previous``: see above.
    """
    stack_file = Path(stack_file).resolve()
    workdir = Path(workdir or stack_file.parent).resolve()
    try:
        config, secure = stack_config(stack_file, extra_config, project=project)
    except ValueError as error:
        raise HarnessError(str(error)) from None
    pulumi.runtime.set_all_config(config, secret_keys=sorted(secure | set(secret_keys)))
    mocks = RealMocks(run_id=run_id or (previous.mocks.run_id if previous else None), workdir=workdir,
                      extra_labels=extra_labels, previous=previous.mocks if previous else None)
    settings.ROOT.set(None)  # the root stack survives a second set_mocks otherwise
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False)
    settings.SETTINGS.root_directory = str(workdir)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    loop = _ensure_event_loop()
    loop.set_default_executor(_EXECUTOR)
    loop.set_exception_handler(_quiet_failed_futures)
    started = time.monotonic()
    try:
        with contextlib.chdir(workdir):
            _sync_await(run_pulumi_func(program))
            root = settings.get_root_resource()
            outputs, secret, unknown = _sync_await(_resolve(getattr(root, "outputs", {})))
        if unknown:
            raise HarnessError(f"stack output(s) {', '.join(unknown)} stayed unknown after the deployment")
    except BaseException as exc:
        mocks.close()
        _drain()
        causes = "\n  ".join(str(error) for error in mocks.errors) or f"{type(exc).__name__}: {exc}"
        if keep_requested():
            message = f"deployment {mocks.run_id} failed (kept for debugging, PGHA_E2E_KEEP=1):\n  {causes}"
        else:
            try:
                mocks.destroy(remote=False)
                what = ("every Docker object created was removed; remote commands keep their state"
                        if mocks.remote.records else "everything created was removed")
                message = f"deployment {mocks.run_id} failed ({what}):\n  {causes}"
            except HarnessError as cleanup:
                message = f"deployment {mocks.run_id} failed:\n  {causes}\nand cleanup failed: {cleanup}"
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise DeploymentFailedError(message, mocks) from exc
    return Deployment(run_id=mocks.run_id, outputs=outputs, secret_outputs=frozenset(secret), mocks=mocks,
                      seconds=time.monotonic() - started, resources=list(mocks.created))
