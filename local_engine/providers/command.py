"""pulumi-command 1.2.1: ``command:remote:Command`` over real SSH and ``command:local:Command`` on this machine.

pulumi/pulumi-command provider/pkg/provider/{remote,local}/commandController.go and pulumi-go-provider
infer/resource.go, as the local engine follows them:
- diff: any changed input is an update, except ``triggers``, whose change replaces (its
  replaceOnChanges tag, and the SDK's ``replace_on_changes=["triggers[*]"]``); a secret and a plain
  value differ, two secrets compare by value. A change of ``connection`` (host, port, user, key) is an
  update: it runs against the new connection and the old host is never cleaned;
- create runs ``create``; update runs ``update``, or ``create`` again when there is no ``update``; delete
  runs ``delete`` with the stored inputs (stdin, connection, environment) and the stored outputs;
  nothing runs for an unset command. A failed create or update writes nothing to the state;
- ``addPreviousOutputInEnv`` (default true) adds PULUMI_COMMAND_STDOUT/STDERR (when non-empty) on update
  and delete; over SSH an sshd without AcceptEnv drops them and the provider only warns;
- the error of a non-zero exit is ``<exit error>: running "<command>":\\n<combined output>``; stdout and
  stderr lose one trailing newline;
- local: argv is ``interpreter + [command]`` or ``/bin/sh -c command``, in ``dir`` (default: the
  program's working directory), environment = this process's plus ``environment``;
- remote: ``environment`` needs AcceptEnv on the server and fails the command otherwise: refused here.
No Read: a refresh never sees drift on hosts (pulumi-command #432).
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from local_engine.providers import Context, Diff, Provider, changed_keys, unknown_outputs
from local_engine.providers.ssh import COMMAND_TIMEOUT_S, Connection, execute
from local_engine.state import ResourceState
from local_engine.wire import EngineError, UnsupportedInputError, as_str_list, check_keys, unwrap

LOGGING = ("stdout", "stderr", "stdoutAndStderr", "none")
COMMON_KEYS = ("create", "update", "delete", "stdin", "triggers", "addPreviousOutputInEnv", "logging")
REMOTE_KEYS = (*COMMON_KEYS, "connection", "environment")
LOCAL_KEYS = (*COMMON_KEYS, "dir", "environment", "interpreter", "assetPaths", "archivePaths")


@dataclass(frozen=True)
class CommandRun:
    """One execution of a command (create, update or delete) on a host, as the provider ran it."""

    name: str
    action: str
    host: str
    command: str
    stdin: str | None
    exit_status: int | None
    stdout: str
    stderr: str
    seconds: float
    error: str | None = None
    started: float = 0.0  # time.monotonic() when it began: which ran one after another, which together


def previous_output_env(inputs: dict[str, Any], outputs: dict[str, Any]) -> dict[str, str]:
    """PULUMI_COMMAND_STDOUT/STDERR from the stored outputs, unless addPreviousOutputInEnv is false."""
    if inputs.get("addPreviousOutputInEnv") is False:
        return {}
    values = unwrap({"PULUMI_COMMAND_STDOUT": outputs.get("stdout", ""),
                     "PULUMI_COMMAND_STDERR": outputs.get("stderr", "")})
    return {key: str(value) for key, value in values.items() if value}


class _Command(Provider):
    keys: tuple[str, ...] = ()

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        where = f"{self.type} '{name}'"
        check_keys(where, unwrap(inputs), self.keys)
        if unwrap(inputs).get("logging") not in (None, *LOGGING):
            raise UnsupportedInputError(f"{where}.logging: {inputs['logging']!r} is not one of {LOGGING}")
        return inputs

    def diff(self, old: ResourceState, inputs: dict[str, Any]) -> Diff:
        changed = changed_keys(old.inputs, inputs, secrets_matter=True)
        return Diff(changed=changed, replace=tuple(k for k in changed if k == "triggers"))

    def create(self, ctx: Context, name: str, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        plain = unwrap(inputs)
        outputs = {**inputs, "stdout": "", "stderr": ""}
        if plain.get("create"):
            result = self.run(ctx, name, "create", plain, plain["create"], {})
            outputs.update(stdout=result.stdout, stderr=result.stderr)
        return f"{name}-{time.time_ns() & 0xFFFFFFFF:08x}", outputs

    def update(self, ctx: Context, old: ResourceState, inputs: dict[str, Any], diff: Diff) -> dict[str, Any]:
        plain = unwrap(inputs)
        outputs = {**inputs, "stdout": old.outputs.get("stdout", ""), "stderr": old.outputs.get("stderr", "")}
        command = plain.get("update") or plain.get("create")
        if command:
            result = self.run(ctx, old.name, "update", plain, command, previous_output_env(plain, old.outputs))
            outputs.update(stdout=result.stdout, stderr=result.stderr)
        return outputs

    def delete(self, ctx: Context, old: ResourceState) -> None:
        plain = unwrap(old.inputs)
        if plain.get("delete"):
            self.run(ctx, old.name, "delete", plain, plain["delete"], previous_output_env(plain, old.outputs))

    def rerun(self, ctx: Context, state: ResourceState) -> CommandRun:
        """Run the stored command again as an update would (a test hook: a forced re-converge)."""
        plain = unwrap(state.inputs)
        command = plain.get("update") or plain.get("create")
        if not command:
            raise EngineError(f"{state.name}: nothing to run")
        runs: list[CommandRun] = []
        self.run(dataclasses.replace(ctx, report=runs.append),
                 state.name, "rerun", plain, command, previous_output_env(plain, state.outputs))
        ctx.report(runs[-1])
        return runs[-1]

    def preview(self, old: ResourceState | None, inputs: dict[str, Any], op: str) -> dict[str, Any]:
        if op == "update" and old is not None:  # the provider's Update is a no-op in preview
            return {**inputs, "stdout": old.outputs.get("stdout", ""), "stderr": old.outputs.get("stderr", "")}
        return unknown_outputs(inputs, "stdout", "stderr")

    def run(self, ctx: Context, name: str, action: str, inputs: dict[str, Any], command: str,
            env: dict[str, str]) -> CommandRun:
        raise NotImplementedError

    @staticmethod
    def reported(ctx: Context, run: CommandRun) -> CommandRun:
        """Report a finished execution; a failed one fails the step with the provider's error text."""
        ctx.report(run)
        if run.error:
            raise EngineError(run.error)
        return run


class RemoteCommand(_Command):
    type = "command:remote:Command"
    source = "pulumi/pulumi-command provider/pkg/provider/remote/commandController.go"
    keys = REMOTE_KEYS

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        super().check(name, inputs)
        where = f"{self.type} '{name}'"
        if unwrap(inputs).get("environment"):
            raise UnsupportedInputError(f"{where}: 'environment' is refused (it needs AcceptEnv on the host and "
                                        "fails the command otherwise; use stdin)")
        Connection.parse(where, unwrap(inputs).get("connection"))
        return inputs

    def run(self, ctx: Context, name: str, action: str, inputs: dict[str, Any], command: str,
            env: dict[str, str]) -> CommandRun:
        conn = Connection.parse(f"{self.type} '{name}'", inputs["connection"])
        started = time.monotonic()
        try:
            result = execute(conn, command, inputs.get("stdin"), env, warn=ctx.log)
        except EngineError as exc:
            return self.reported(ctx, CommandRun(name, action, conn.host, command, inputs.get("stdin"), None, "",
                                                 "", time.monotonic() - started, f"{conn.label}: {exc}", started))
        error = None
        if result.exit_status != 0:
            error = (f"{conn.label}: Process exited with status {result.exit_status}: running {command!r}:\n"
                     f"{result.combined}")
        return self.reported(ctx, CommandRun(name, action, conn.host, command, inputs.get("stdin"),
                                             result.exit_status, result.stdout, result.stderr, result.seconds, error,
                                             started))


class LocalCommand(_Command):
    type = "command:local:Command"
    source = "pulumi/pulumi-command provider/pkg/provider/local/commandController.go"
    keys = LOCAL_KEYS

    def check(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        super().check(name, inputs)
        where = f"{self.type} '{name}'"
        plain = unwrap(inputs)
        for key in ("assetPaths", "archivePaths"):
            if plain.get(key):
                raise UnsupportedInputError(f"{where}.{key}: not supported by the local engine")
        as_str_list(plain.get("interpreter"), f"{where}.interpreter")
        return inputs

    def run(self, ctx: Context, name: str, action: str, inputs: dict[str, Any], command: str,
            env: dict[str, str]) -> CommandRun:
        argv = [*(inputs.get("interpreter") or ["/bin/sh", "-c"]), command]
        environment = {**os.environ, **{k: str(v) for k, v in (inputs.get("environment") or {}).items()}, **env}
        started = time.monotonic()
        stdin = inputs.get("stdin") or None
        try:
            proc = subprocess.run(argv, input=stdin.encode() if stdin else None, capture_output=True,
                                  cwd=inputs.get("dir") or str(ctx.workdir), env=environment,
                                  timeout=COMMAND_TIMEOUT_S, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return self.reported(ctx, CommandRun(name, action, "localhost", command, stdin, None, "", "",
                                                 time.monotonic() - started, f"{command!r}: {exc}", started))
        stdout, stderr = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        error = None
        if proc.returncode != 0:
            error = f"exit status {proc.returncode}: running {command!r}:\n{stdout}{stderr}"
        return self.reported(ctx, CommandRun(name, action, "localhost", command, stdin, proc.returncode,
                                             stdout.removesuffix("\n"), stderr.removesuffix("\n"),
                                             time.monotonic() - started, error, started))


PROVIDERS = (RemoteCommand(), LocalCommand())
