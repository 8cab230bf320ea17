"""Stacks of the local engine: preview, up and destroy, step by step as the real engine takes them.

Each ``up`` runs the program twice, as ``pulumi up`` does: a preview that computes the plan (nothing is
touched; values not known yet stay unknown), then the update, which registers every resource again
and acts on the diff against the stack's state. The rules, from pulumi/pulumi pkg/resource/deploy:

- step_generator.go (continueStepsFromDiff): a resource without state is created; with state, the
  provider's Diff decides: no change is a same step (nothing runs), a change of a replacing input (the
  provider's, or one under the resource's ``replaceOnChanges``) a replacement, any other change an
  update; a resource whose last create failed half-way (init errors) is updated even without changes.
  ``deleteBeforeReplace`` of the resource options wins over the provider's answer.
- A replacement is create-before-delete: the new resource is created in its step, the old one deleted
  after the program finished, with the other deletes (deployment_executor.go performPostSteps,
  GenerateDeletes). Delete-before-replace deletes first, in the same chain: before that, every resource
  that depends on the old one through an input (a property dependency) and would itself be replaced
  with that input unknown, dependents first (calculateDependentReplacements); those are created again
  when the program registers them. A plain dependsOn never cascades.
- Resources the program no longer registers are deleted after it finished, in reverse dependency
  order: groups with no dependents left run in parallel, with a barrier between groups
  (ScheduleDeletes). Destroy deletes everything that way. Nothing is deleted when the program failed.
- step_executor.go: steps of independent resources run concurrently, at most ``parallel`` at a time
  (the CLI's default is 4 x GOMAXPROCS); after a step fails no new step starts, running ones finish,
  and what was made stays in the state (a failed update never rolls back).
- Aliases: a resource is matched to its old state by URN, else by the first alias URN in the state.
- Secrets: stored inputs keep their secretness; outputs become secret as step_executor.go and
  provider_plugin.go annotateSecrets decide (see ``wire.annotate_secrets``).
"""

from __future__ import annotations

import concurrent.futures
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, NoReturn

import docker
from pulumi.output import Unknown

from local_engine import runner
from local_engine.monitor import EngineMonitor, Registration
from local_engine.plan import Op, Plan, Step
from local_engine.providers import Context, Diff, PartialCreateError, Provider, docker_container, docker_objects
from local_engine.providers import command as command_providers
from local_engine.providers import random as random_providers
from local_engine.providers import tls as tls_providers
from local_engine.providers.command import CommandRun
from local_engine.runner import ORGANIZATION
from local_engine.stack_file import stack_config
from local_engine.state import ResourceState, antichains, dependents, make_urn
from local_engine.wire import (
    RUN_LABEL,
    UNKNOWN,
    EngineError,
    UnsupportedInputError,
    annotate_secrets,
    contains_secret,
    make_secret,
    unwrap,
)

PROVIDERS: dict[str, Provider] = {p.type: p for module in (docker_container, docker_objects, command_providers,
                                                           random_providers, tls_providers)
                                  for p in module.PROVIDERS}


def default_parallel() -> int:
    """The CLI's default step parallelism: PULUMI_PARALLEL, else 4 x GOMAXPROCS (pkg/cmd/pulumi/operations/up.go)."""
    configured = int(os.environ.get("PULUMI_PARALLEL", "0") or 0)
    return configured if configured > 0 else 4 * (os.cpu_count() or 1)


@dataclass
class Update:
    """One preview-then-update (or destroy): the plan it showed, the steps it took, what commands ran."""

    kind: str
    plan: Plan
    steps: Plan
    runs: list[CommandRun] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: frozenset[str] = frozenset()
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def ran(self, action: str | None = None) -> list[str]:
        """Names of the commands that ran (optionally only those of one action), in order."""
        return [r.name for r in self.runs if action is None or r.action == action]


class UpdateFailedError(EngineError):
    """A preview, update or destroy failed; ``update`` holds what it did before it stopped."""

    def __init__(self, message: str, update: Update) -> None:
        super().__init__(message)
        self.update = update


def _to_wire(value: Any) -> Any:
    """Values the SDK serializes: unknowns as the engine's sentinel."""
    if isinstance(value, Unknown):
        return UNKNOWN
    if isinstance(value, dict):
        return {k: _to_wire(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_to_wire(v) for v in value]
    return value


def _stored_inputs(registered: Mapping[str, Any], checked: Mapping[str, Any]) -> dict[str, Any]:
    """The checked inputs in wire shape: a property that carried a secret anywhere stays secret whole."""
    return {key: make_secret(value) if contains_secret(registered.get(key)) else value
            for key, value in checked.items()}


def _replace_on_changes(paths: Iterable[str], key: str) -> bool:
    """Whether a change of top-level ``key`` is under one of the resource's replaceOnChanges paths."""
    return any(path == key or path.split("[", 1)[0].split(".", 1)[0] == key or path == "*" for path in paths)


class Stack:
    """One stack of the local engine: its state and every deployment made on it.

    ``workdir`` is the project directory (where Pulumi.yaml is, where the program runs); ``stack_file``
    gives the ``config:``; ``config`` overrides keys for every deployment of this stack.
    """

    def __init__(self, name: str, workdir: Path, *, project: str, stack_file: Path | None = None,
                 config: Mapping[str, Any] | None = None, secret_keys: Collection[str] = (),
                 labels: Mapping[str, str] | None = None, parallel: int | None = None,
                 run_id: str | None = None, log: Callable[[str], None] | None = None) -> None:
        self.name, self.project = name, project
        self.workdir = Path(workdir).resolve()
        self.stack_file = Path(stack_file).resolve() if stack_file else self.workdir / f"Pulumi.{name}.yaml"
        self.base_config = dict(config or {})
        self.secret_keys = set(secret_keys)
        self.run_id = run_id or time.strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(3)
        self.labels = {RUN_LABEL: self.run_id, **(labels or {})}
        self.parallel = parallel or default_parallel()
        self.log = log or (lambda text: print(text, file=sys.stderr, flush=True))
        self.snapshot: dict[str, ResourceState] = {}
        self.pending_deletes: list[ResourceState] = []  # old resources of create-before-delete replacements
        self.outputs: dict[str, Any] = {}
        self.secret_outputs: frozenset[str] = frozenset()
        self._local = threading.local()

    # -- what the stack holds ----------------------------------------------------------------
    def resources(self, type_: str | None = None) -> list[ResourceState]:
        """The resources in the state, in registration order (optionally of one type)."""
        return [s for s in self.snapshot.values() if type_ is None or s.type == type_]

    def state_of(self, name: str, type_: str | None = None) -> ResourceState:
        """The state of the resource with this name (and type, where names repeat across types)."""
        found = [s for s in self.resources(type_) if s.name == name]
        if len(found) != 1:
            raise KeyError(f"{len(found)} resources named {name!r} in stack {self.name}")
        return found[0]

    # -- operations --------------------------------------------------------------------------
    def preview(self, program: Callable[[], Any], config: Mapping[str, Any] | None = None) -> Plan:
        """What ``up`` would do now: the plan, computed without touching anything."""
        started = time.monotonic()
        run = _Pass(self, preview=True)
        try:
            self._evaluate(run, program, config)
            run.finish()
        except BaseException as exc:
            self._failed("preview", run, Update("preview", run.plan(), run.plan()), exc, started)
        return run.plan()

    def up(self, program: Callable[[], Any], config: Mapping[str, Any] | None = None) -> Update:
        """Preview, show the plan, then update the stack as ``pulumi up --yes`` does."""
        started = time.monotonic()
        plan = self.preview(program, config)
        self.log(plan.render(f"Previewing update ({self.name})"))
        run = _Pass(self, preview=False)
        update = Update("update", plan, run.executed)
        try:
            result = self._evaluate(run, program, config)
            if result.unknown_outputs:
                raise EngineError(f"stack output(s) {', '.join(result.unknown_outputs)} stayed unknown")
            run.finish()
        except BaseException as exc:
            self._failed("update", run, update, exc, started)
        self.snapshot, self.pending_deletes = run.snapshot(), run.still_pending()
        self.outputs, self.secret_outputs = result.outputs, result.secret_outputs
        update.runs, update.outputs, update.secret_outputs = run.runs, self.outputs, self.secret_outputs
        update.seconds = time.monotonic() - started
        self.log(run.executed.render(f"Update of {self.name} done in {update.seconds:.0f}s"))
        return update

    def destroy(self) -> Update:
        """Delete every resource of the stack, dependents first, as ``pulumi destroy --yes`` does."""
        started = time.monotonic()
        run = _Pass(self, preview=False)
        plan = Plan([Step("delete", s.urn, s.type, s.name, s.custom) for s in self.snapshot.values()])
        update = Update("destroy", plan, run.executed)
        try:
            run.delete_all([*self.pending_deletes, *self.snapshot.values()])
        finally:
            self.pending_deletes = run.still_pending()
            self.snapshot = {urn: s for urn, s in self.snapshot.items() if urn not in run.deleted}
            update.runs, update.errors, update.seconds = run.runs, run.errors, time.monotonic() - started
        if run.errors:
            raise UpdateFailedError(f"destroy of stack {self.name} failed:\n  " + "\n  ".join(run.errors), update)
        self.outputs, self.secret_outputs = {}, frozenset()
        return update

    def rerun(self, name: str) -> CommandRun:
        """Run a command resource's stored command again, as an update would (a test hook)."""
        state = self.state_of(name)
        provider = PROVIDERS[state.type]
        if not isinstance(provider, command_providers._Command):
            raise EngineError(f"{name}: a {state.type} is not a command")
        return provider.rerun(self.context(threading.Event(), lambda run: None), state)

    # -- internals ---------------------------------------------------------------------------
    def _failed(self, what: str, run: _Pass, update: Update, exc: BaseException, started: float) -> NoReturn:
        """Let outstanding registrations finish, then raise what failed with what the pass did before. A failed
        update keeps what it made, as the engine does (the next one follows it): the state is taken only
        after the steps still running have ended, or what they made would be lost from it."""
        runner.drain()
        if not run.preview:
            self.snapshot, self.pending_deletes = run.snapshot(), run.still_pending()
        update.runs, update.errors, update.seconds = run.runs, run.errors, time.monotonic() - started
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        raise UpdateFailedError(f"{what} of stack {self.name} failed:\n  {run.describe(exc)}", update) from exc

    def docker_client(self) -> docker.DockerClient:
        """A docker client for the calling thread (DOCKER_HOST honoured), with a timeout long enough for builds."""
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = docker.from_env(timeout=900)
        return client

    def context(self, cancel: threading.Event, report: Callable[[Any], None]) -> Context:
        return Context(self.workdir, dict(self.labels), cancel, self.log, self.docker_client, report)

    def _evaluate(self, run: _Pass, program: Callable[[], Any], config: Mapping[str, Any] | None) -> Any:
        try:
            values, secure = stack_config(self.stack_file, {**self.base_config, **(config or {})},
                                          project=self.project)
        except ValueError as error:
            raise EngineError(str(error)) from None
        monitor = EngineMonitor(run.register, run.register_outputs, self._read_stack)
        return runner.evaluate(program, monitor, project=self.project, stack=self.name, config=values,
                               secret_keys=secure | self.secret_keys, preview=run.preview, workdir=self.workdir,
                               log=run.diagnostics.append)

    def _read_stack(self, name: str) -> tuple[dict[str, Any], frozenset[str]]:
        """A StackReference's read (pulumi/pulumi pkg/resource/deploy/builtins.go readStackReference: the
        backend's GetStackOutputs): the outputs of the stack's last update, as the backend holds them while
        this one runs. Only this stack's own name resolves here: the local engine keeps one stack."""
        own = {self.name, f"{self.project}/{self.name}", f"{ORGANIZATION}/{self.project}/{self.name}"}
        if name not in own:
            raise UnsupportedInputError(f"StackReference {name!r}: the local engine reads only this stack's own "
                                        f"outputs ({sorted(own)})")
        return dict(self.outputs), self.secret_outputs


class _Pass:
    """One run of the program against the stack's state: a preview (plan only) or an update (acts)."""

    def __init__(self, stack: Stack, preview: bool) -> None:
        self.stack, self.preview = stack, preview
        self.old: dict[str, ResourceState] = dict(stack.snapshot)
        self.news: dict[str, ResourceState] = {}
        self.steps: list[Step] = []
        self.executed = Plan()
        self.runs: list[CommandRun] = []
        self.errors: list[str] = []
        self.diagnostics: list[str] = []
        self.claimed: dict[str, str] = {}  # old URN -> the new URN that took its state
        self.aliased: dict[str, str] = {}  # new URN -> the old URN it took the state of through an alias
        self.recreate: dict[str, str] = {}  # old URN deleted by a delete-before-replace cascade -> why
        # Replaced create-before-delete: deleted after the program, or by the next update if this one fails
        # (the engine keeps them in the state marked for deletion).
        self.pending_deletes: list[ResourceState] = list(stack.pending_deletes)
        self.deleted: set[str] = set()
        self.deleted_states: list[ResourceState] = []
        self.lock = threading.Lock()
        self.workers = threading.BoundedSemaphore(stack.parallel)
        self.failed = threading.Event()
        # Steps in flight when another fails run to their end (the engine stops starting new ones).
        self.cancel = threading.Event()
        self.ctx = stack.context(self.cancel, self._report)

    # -- registrations (called from the SDK's threads) ------------------------------------------
    def register(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        try:
            return self._register(reg)
        except Exception as exc:
            with self.lock:
                self.errors.append(f"{reg.type} '{reg.name}': {exc}")
            self.failed.set()
            raise

    def register_outputs(self, urn: str, outputs: dict[str, Any]) -> None:
        """RegisterResourceOutputs replaces a component's outputs (step_executor.go
        executeRegisterResourceOutputs: "intentionally overwrites")."""
        with self.lock:
            if urn in self.news:
                self.news[urn].outputs = outputs

    def _register(self, reg: Registration) -> tuple[str, dict[str, Any]]:
        where = f"{reg.type} '{reg.name}'"
        if reg.unsupported:
            raise UnsupportedInputError(f"{where}: {', '.join(reg.unsupported)} not supported by the local engine")
        with self.lock:
            if reg.urn in self.news:
                raise EngineError(f"{where}: duplicate resource URN {reg.urn}")
            old = self._claim(reg)
        if not reg.custom:
            return self._component(reg, old)
        provider = PROVIDERS.get(reg.type)
        if provider is None:
            raise UnsupportedInputError(f"resource type {reg.type} is not supported by the local engine; "
                                        "add a provider in local_engine/providers")
        plain = provider.check(reg.name, unwrap(_to_wire(reg.inputs)))
        inputs = _stored_inputs(reg.inputs, plain)
        op, diff, dbr, why = self._decide(reg, provider, old, inputs)
        step = Step(op, reg.urn, reg.type, reg.name, True, diff.changed, diff.replace, dbr, why)
        if self.preview:
            return self._preview(reg, provider, old, plain, inputs, step)
        with self.workers:
            if self.failed.is_set():
                raise EngineError("not started: an earlier step failed")
            resource_id, outputs, init_errors = self._apply(reg, provider, old, plain, inputs, step, diff)
        outputs = annotate_secrets(outputs, inputs, reg.additional_secret_outputs)
        self._record(reg, resource_id, inputs, outputs, step, init_errors, old)
        if init_errors:
            raise EngineError(init_errors[0])
        return resource_id, outputs

    def _claim(self, reg: Registration) -> ResourceState | None:
        """The old state of a registration: by URN, else by the first of its aliases in the state."""
        for urn in (reg.urn, *self._alias_urns(reg)):
            state = self.old.get(urn)
            if state is not None and urn not in self.claimed:
                self.claimed[urn] = reg.urn
                if urn != reg.urn:
                    self.aliased[reg.urn] = urn
                return state
        return None

    def _alias_urns(self, reg: Registration) -> list[str]:
        """Alias URNs of a registration (step_generator.go generateAliases, collapseAliasToUrn): a spec's
        empty fields take the resource's own, its parent is the parent's old URN when the parent matched
        an alias, and the resource inherits its parent's matched alias (inheritedChildAlias: a name that
        starts with the parent's name takes the old parent's name instead)."""
        parent_old = self.aliased.get(reg.parent)
        found: list[str] = []
        for alias in reg.aliases:
            if isinstance(alias, str):
                found.append(alias)
                continue
            parent = "" if alias.no_parent else alias.parent_urn if alias.parent_urn is not None else reg.parent
            parent = self.aliased.get(parent, parent)
            found.append(make_urn(alias.stack or self.stack.name, alias.project or self.stack.project, parent,
                              alias.type or reg.type, alias.name or reg.name))
        if parent_old is not None:
            parent_name = reg.parent.rsplit("::", 1)[-1]
            old_parent_name = parent_old.rsplit("::", 1)[-1]
            name = old_parent_name + reg.name[len(parent_name):] if reg.name.startswith(parent_name) else reg.name
            found.append(make_urn(self.stack.name, self.stack.project, parent_old, reg.type, name))
        return found

    def _component(self, reg: Registration, old: ResourceState | None) -> tuple[str, dict[str, Any]]:
        inputs = _to_wire(reg.inputs)
        op: Op = "create" if old is None else ("same" if unwrap(old.inputs) == unwrap(inputs) else "update")
        outputs = dict(old.outputs) if old is not None and op == "same" else {}
        step = Step(op, reg.urn, reg.type, reg.name, False)
        self._record(reg, "", inputs, outputs, step, [], old)
        return "", outputs

    def _decide(self, reg: Registration, provider: Provider, old: ResourceState | None,
                inputs: dict[str, Any]) -> tuple[Op, Diff, bool, str]:
        if old is None:
            return "create", Diff(), False, ""
        if old.urn in self.recreate:
            return "replace", Diff(), True, self.recreate[old.urn]
        diff = provider.diff(old, inputs)
        replace_keys = tuple(dict.fromkeys([*diff.replace, *(k for k in diff.changed
                                                             if _replace_on_changes(reg.replace_on_changes, k))]))
        diff = replace(diff, replace=replace_keys)
        notes = "; ".join(diff.notes)
        if replace_keys:
            dbr = reg.delete_before_replace if reg.delete_before_replace is not None else diff.delete_before_replace
            return "replace", diff, dbr, f"{', '.join(replace_keys)} changed" + (f" ({notes})" if notes else "")
        if diff.changed:
            return "update", diff, False, f"{', '.join(diff.changed)} changed" + (f" ({notes})" if notes else "")
        if old.init_errors:
            return "update", diff, False, "the last create failed half-way (init errors)"
        return "same", diff, False, ""

    def _preview(self, reg: Registration, provider: Provider, old: ResourceState | None, plain: dict[str, Any],
                 inputs: dict[str, Any], step: Step) -> tuple[str, dict[str, Any]]:
        if step.op == "same" and old is not None:
            outputs, resource_id = dict(old.outputs), old.id
        else:
            outputs = provider.preview(old if step.op == "update" else None, plain, step.op)
            resource_id = old.id if step.op == "update" and old is not None else ""
            if step.op == "replace" and step.delete_before_replace and old is not None:
                self._cascade(old)
        outputs = annotate_secrets(outputs, inputs, reg.additional_secret_outputs)
        self._record(reg, resource_id, inputs, outputs, step, [], old)
        return resource_id, outputs

    def _apply(self, reg: Registration, provider: Provider, old: ResourceState | None, plain: dict[str, Any],
               inputs: dict[str, Any], step: Step, diff: Diff) -> tuple[str, dict[str, Any], list[str]]:
        try:
            if step.op == "same" and old is not None:
                return old.id, dict(old.outputs), []
            if step.op == "update" and old is not None:
                return old.id, provider.update(self.ctx, old, plain, diff), []
            if step.op == "replace" and old is not None and old.urn not in self.recreate:
                if step.delete_before_replace:
                    for dependent in reversed(self._cascade(old)):
                        self._delete(dependent)
                    self._delete(old)
                else:
                    self.pending_deletes.append(old)
            resource_id, outputs = provider.create(self.ctx, reg.name, plain)
            return resource_id, outputs, []
        except PartialCreateError as partial:
            return partial.resource_id, partial.outputs, [str(partial)]

    def _cascade(self, root: ResourceState) -> list[ResourceState]:
        """The dependents a delete-before-replace of ``root`` replaces too, in dependency order."""
        replaced = {root.urn}
        found = []
        for candidate in dependents(self.old, root.urn, skip=self.news):
            if not candidate.custom or candidate.urn in self.recreate:
                continue
            keys = [k for k, urns in candidate.property_dependencies.items() if set(urns) & replaced]
            if not keys:
                continue
            probe = {**candidate.inputs, **dict.fromkeys(keys, UNKNOWN)}
            if PROVIDERS[candidate.type].diff(candidate, probe).replace:
                replaced.add(candidate.urn)
                found.append(candidate)
                self.recreate[candidate.urn] = f"{', '.join(keys)} from {root.name}, replaced delete-before-replace"
        return found

    def _record(self, reg: Registration, resource_id: str, inputs: dict[str, Any], outputs: dict[str, Any],
                step: Step, init_errors: list[str], old: ResourceState | None) -> None:
        state = ResourceState(
            urn=reg.urn, type=reg.type, name=reg.name, custom=reg.custom, id=resource_id, parent=reg.parent,
            inputs=inputs, outputs=outputs, dependencies=reg.dependencies,
            property_dependencies=reg.property_dependencies, delete_before_replace=reg.delete_before_replace,
            additional_secret_outputs=reg.additional_secret_outputs, replace_on_changes=reg.replace_on_changes,
            protect=reg.protect, init_errors=init_errors)
        with self.lock:
            self.news[reg.urn] = state
            self.steps.append(step)
            if not self.preview:
                self.executed.steps.append(step)
        if not self.preview and step.custom and step.op != "same":
            self.stack.log(f"  {step.line()}" + (f" FAILED: {init_errors[0]}" if init_errors else ""))

    def _report(self, run: CommandRun) -> None:
        with self.lock:
            self.runs.append(run)

    # -- deletes ------------------------------------------------------------------------------
    def _delete(self, state: ResourceState) -> None:
        if state.protect:
            raise EngineError(f"{state.type} '{state.name}' is protected and cannot be deleted")
        if state.custom:
            PROVIDERS[state.type].delete(self.ctx, state)
        with self.lock:
            self.deleted_states.append(state)
            if not any(state is p for p in self.pending_deletes):
                self.deleted.add(state.urn)

    def finish(self) -> None:
        """After the program: delete what it no longer declares and what was replaced create-before-delete."""
        gone = [s for urn, s in self.old.items()
                if urn not in self.claimed and urn not in self.news and urn not in self.recreate]
        for state in gone:
            self.steps.append(Step("delete", state.urn, state.type, state.name, state.custom,
                                   why="no longer declared by the program"))
        if self.preview:
            return
        self.delete_all([*gone, *self.pending_deletes], steps=gone)
        if self.errors:
            raise EngineError("; ".join(self.errors))

    def delete_all(self, condemned: list[ResourceState], steps: Iterable[ResourceState] | None = None) -> None:
        """Delete ``condemned`` group by group, dependents first; record a step for each of ``steps``."""
        stepped = {s.urn for s in (condemned if steps is None else steps)}
        failed: set[str] = set()
        with concurrent.futures.ThreadPoolExecutor(max_workers=self.stack.parallel) as pool:
            for group in antichains(condemned):
                group = [s for s in group if not (s.edges() & failed)]
                futures = {pool.submit(self._delete, state): state for state in group}
                for future, state in futures.items():
                    try:
                        future.result()
                    except Exception as exc:
                        failed.add(state.urn)
                        with self.lock:
                            self.errors.append(f"deleting {state.type} '{state.name}': {exc}")
                        continue
                    if state.urn in stepped:
                        step = Step("delete", state.urn, state.type, state.name, state.custom)
                        self.executed.steps.append(step)
                        if state.custom:
                            self.stack.log(f"  {step.line()}")

    # -- results ------------------------------------------------------------------------------
    def plan(self) -> Plan:
        return Plan(list(self.steps), list(self.diagnostics))

    def snapshot(self) -> dict[str, ResourceState]:
        """The state after this pass: what it registered, then what it left of the old state (a failed
        update or delete keeps the old state)."""
        kept = {urn: s for urn, s in self.old.items()
                if self.claimed.get(urn) not in self.news and urn not in self.news and urn not in self.deleted}
        return {**self.news, **kept}

    def still_pending(self) -> list[ResourceState]:
        """Replaced resources whose delete has not happened (yet)."""
        done = {id(s) for s in self.deleted_states}
        return [s for s in self.pending_deletes if id(s) not in done]

    def describe(self, exc: BaseException) -> str:
        return "\n  ".join(self.errors) or f"{type(exc).__name__}: {exc}"
