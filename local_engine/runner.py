"""Run a Pulumi program in this process, against a resource monitor of the local engine.

The SDK's mock runtime provides the plumbing (``set_mocks``, a fresh root stack): the program runs
the way ``@pulumi.runtime.test`` runs it (``run_pulumi_func``: run it, then wait until every resource
registration and every pending Output has finished), each RegisterResource goes to ``monitor``, and
the stack outputs are read from the root ``Stack`` resource and converted the way the SDK converts
real stack outputs (``stack.massage``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
from pulumi.runtime import settings
from pulumi.runtime.stack import massage, run_pulumi_func, wait_for_rpcs
from pulumi.runtime.sync_await import _ensure_event_loop, _sync_await

from local_engine.wire import EngineError

# The SDK registers resources through loop.run_in_executor(None, ...); its default pool (cpu + 4
# threads) would cap concurrent registrations below the engine's step parallelism.
_EXECUTOR = ThreadPoolExecutor(max_workers=64, thread_name_prefix="local-engine")
# The organization of a self-managed (diy) backend, which `pulumi.get_organization()` returns there.
ORGANIZATION = "organization"


class _Diagnostics(logging.Handler):
    """Hands each message the program logs (pulumi.log.*) to the engine, with its severity as the CLI shows it."""

    def __init__(self, log: Callable[[str], None]) -> None:
        super().__init__(logging.INFO)
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        prefix = "" if record.levelno == logging.INFO else f"{record.levelname.lower()}: "
        self.log(prefix + record.getMessage())


def _logger(log: Callable[[str], None] | None) -> logging.Logger:
    logger = logging.getLogger("local_engine.program")
    logger.handlers.clear()
    logger.propagate = False
    logger.setLevel(logging.INFO)
    if log is not None:
        logger.addHandler(_Diagnostics(log))
    return logger


@dataclass(frozen=True)
class ProgramResult:
    """What a program run left: its stack outputs (plain), which are secret, which stayed unknown."""

    outputs: dict[str, Any]
    secret_outputs: frozenset[str]
    unknown_outputs: tuple[str, ...]


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
    nobody awaits; the failure is reported by the engine, so drop those GC-time warnings."""
    if isinstance(context.get("exception"), EngineError) and "never retrieved" in context.get("message", ""):
        return
    loop.default_exception_handler(context)


def drain(deadline_s: float = 900.0) -> None:
    """After a failure, let every outstanding registration finish (they fail fast once cancelled)."""
    deadline = time.monotonic() + deadline_s
    manager = settings.SETTINGS.rpc_manager
    while manager.rpcs and time.monotonic() < deadline:
        try:
            _sync_await(wait_for_rpcs())
            return
        except BaseException:
            if not manager.rpcs:
                return


def evaluate(program: Callable[[], Any], monitor: Any, *, project: str, stack: str, config: Mapping[str, str],
             secret_keys: Collection[str], preview: bool, workdir: Path,
             log: Callable[[str], None] | None = None) -> ProgramResult:
    """Run ``program`` with ``monitor`` as its resource monitor; raises what the program raised. ``log`` gets
    each message the program logs."""
    pulumi.runtime.set_all_config(dict(config), secret_keys=sorted(secret_keys))
    settings.ROOT.set(None)  # the root stack survives a second set_mocks otherwise
    pulumi.runtime.set_mocks(monitor.mocks, project=project, stack=stack, preview=preview, monitor=monitor,
                             logger=_logger(log), organization=ORGANIZATION)
    settings.SETTINGS.root_directory = str(workdir)
    settings.SETTINGS.rpc_manager.clear()
    settings.SETTINGS.outputs.clear()
    loop = _ensure_event_loop()
    loop.set_default_executor(_EXECUTOR)
    loop.set_exception_handler(_quiet_failed_futures)
    with contextlib.chdir(workdir):  # Pulumi runs a program in its project directory
        _sync_await(run_pulumi_func(program))
        root = settings.get_root_resource()
        outputs, secret, unknown = _sync_await(_resolve(getattr(root, "outputs", {})))
    return ProgramResult(outputs, frozenset(secret), tuple(unknown))
