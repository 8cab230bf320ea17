"""Real SSH for ``command:remote:Command`` (pulumi-command 1.x), with the engine's update semantics.

What pulumi-command does, and so what this does:

- **create**: dial ``connection`` (retrying up to ``dialErrorLimit`` dials, each bounded by
  ``perDialTimeout``), open one session, send ``stdin``, run ``create``. A non-zero exit fails the
  resource with ``Process exited with status N: running "<command>":`` followed by the combined
  output. ``stdout``/``stderr`` (one trailing newline trimmed) join the inputs in the state.
- **update** (a later ``deploy(previous=...)``): the engine diffs the new inputs against the
  recorded ones. Unchanged: nothing runs and the recorded state is returned. Changed
  ``connection`` or ``triggers``: a replacement, which the harness refuses (the program never
  changes them between the runs the tests make). Anything else changed: ``update`` runs, or
  ``create`` again when there is no ``update``; with ``addPreviousOutputInEnv`` (default true) the
  previous stdout/stderr are offered as ``PULUMI_COMMAND_STDOUT``/``_STDERR`` environment variables,
  which sshd drops unless its ``AcceptEnv`` allows them (pulumi-command only warns then, too).
  A failed create or update leaves the recorded state as it was, so the next run tries again.
- **delete** (destroy): ``delete`` runs with the recorded inputs, in reverse creation order.
- ``environment`` needs ``AcceptEnv`` on the server and the program does not use it: refused.
  ``logging`` only decides what the engine prints: accepted. Unknown keys are refused.

The host key is not checked unless ``hostKey`` is given (pulumi-command ignores it likewise).
"""

from __future__ import annotations

import base64
import io
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import paramiko

from .values import HarnessError, UnsupportedInputError, as_int, check_keys, unwrap

REMOTE_COMMAND = "command:remote:Command"
COMMAND_KEYS = ("connection", "create", "update", "delete", "stdin", "triggers", "addPreviousOutputInEnv",
                "logging")
# Changing these replaces the resource (pulumi-command marks them replaceOnChanges).
REPLACE_KEYS = ("connection", "triggers")
CONNECTION_KEYS = ("host", "port", "user", "privateKey", "privateKeyPassword", "password", "dialErrorLimit",
                   "perDialTimeout", "hostKey")
LOGGING = ("stdout", "stderr", "stdoutAndStderr", "none")
#: The engine has no limit; the harness stops a command that runs longer (a hung step, not a slow one).
COMMAND_TIMEOUT_S = 1800.0
# pulumi's retry.Until: 100 ms, growing 1.5x per attempt, at most 5 s between dials.
DIAL_DELAY_S, DIAL_BACKOFF, DIAL_MAX_DELAY_S = 0.1, 1.5, 5.0
_KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)


@dataclass(frozen=True)
class Connection:
    """The ``connection`` input of one command."""

    host: str
    port: int = 22
    user: str = "root"
    private_key: str | None = None
    private_key_password: str | None = None
    password: str | None = None
    dial_error_limit: int = 10
    per_dial_timeout: int = 15
    host_key: str | None = None

    @classmethod
    def parse(cls, where: str, raw: Any) -> Connection:
        if not isinstance(raw, Mapping) or not raw.get("host"):
            raise UnsupportedInputError(f"{where}.connection: a mapping with 'host' is required, got {raw!r}")
        check_keys(f"{where}.connection", raw, CONNECTION_KEYS)
        return cls(host=str(raw["host"]), port=as_int(raw.get("port", 22), f"{where}.connection.port"),
                   user=str(raw.get("user") or "root"), private_key=raw.get("privateKey"),
                   private_key_password=raw.get("privateKeyPassword"), password=raw.get("password"),
                   dial_error_limit=as_int(raw.get("dialErrorLimit", 10), f"{where}.connection.dialErrorLimit"),
                   per_dial_timeout=as_int(raw.get("perDialTimeout", 15), f"{where}.connection.perDialTimeout"),
                   host_key=raw.get("hostKey"))

    @property
    def label(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"

    def _pkey(self) -> paramiko.PKey | None:
        if not self.private_key:
            return None
        errors = []
        for key_type in _KEY_TYPES:
            try:
                return key_type.from_private_key(io.StringIO(self.private_key), password=self.private_key_password)
            except (paramiko.SSHException, ValueError) as exc:
                errors.append(f"{key_type.__name__}: {exc}")
        raise HarnessError(f"{self.label}: cannot parse the private key ({'; '.join(errors)})")

    def dial(self) -> paramiko.SSHClient:
        """Connect, retrying like pulumi-command: at most ``dial_error_limit`` failed dials (-1: no limit)."""
        pkey = self._pkey()
        delay, dials = DIAL_DELAY_S, 0
        while True:
            client = paramiko.SSHClient()
            if self.host_key:
                key_type, _, blob = self.host_key.strip().partition(" ")
                known = paramiko.PKey.from_type_string(key_type, base64.b64decode(blob.split()[0]))
                client.get_host_keys().add(f"[{self.host}]:{self.port}" if self.port != 22 else self.host,
                                           key_type, known)
                client.set_missing_host_key_policy(paramiko.RejectPolicy())
            else:
                client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            timeout = self.per_dial_timeout or None
            try:
                client.connect(self.host, port=self.port, username=self.user, pkey=pkey, password=self.password,
                               timeout=timeout, banner_timeout=timeout, auth_timeout=timeout,
                               look_for_keys=False, allow_agent=False)
                return client
            except (OSError, paramiko.SSHException) as exc:
                client.close()
                dials += 1
                if self.dial_error_limit != -1 and dials > self.dial_error_limit:
                    reason = (", ".join(str(e) for e in exc.errors.values())
                              if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) else str(exc))
                    raise HarnessError(f"dial tcp {self.host}:{self.port}: {reason or type(exc).__name__} "
                                       f"(gave up after {dials} dials)") from exc
            time.sleep(delay)
            delay = min(delay * DIAL_BACKOFF, DIAL_MAX_DELAY_S)


@dataclass(frozen=True)
class Result:
    """One execution of a command on a host."""

    exit_status: int
    stdout: str
    stderr: str
    combined: str
    seconds: float


def execute(conn: Connection, command: str, stdin: str | None, env: Mapping[str, str] | None = None,
            timeout_s: float = COMMAND_TIMEOUT_S) -> Result:
    """Run ``command`` in one SSH session with ``stdin``; returns the exit status and output."""
    started = time.monotonic()
    client = conn.dial()
    try:
        transport = client.get_transport()
        if transport is None:
            raise HarnessError(f"{conn.label}: no SSH transport after connecting")
        channel = transport.open_session()
        for key, value in (env or {}).items():
            channel.set_environment_variable(key, value)  # dropped by sshd unless AcceptEnv allows it
        channel.exec_command(command)
        out, err, both = bytearray(), bytearray(), bytearray()
        lock = threading.Lock()

        def pump(read: Callable[[int], bytes], sink: bytearray) -> None:
            while chunk := read(32768):
                with lock:
                    sink.extend(chunk)
                    both.extend(chunk)

        readers = [threading.Thread(target=pump, args=(channel.recv, out), daemon=True),
                   threading.Thread(target=pump, args=(channel.recv_stderr, err), daemon=True)]
        for reader in readers:
            reader.start()
        try:
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
        except (OSError, paramiko.SSHException):
            pass  # the command ended without reading all of stdin: its exit status tells the rest
        if not channel.status_event.wait(timeout_s):
            channel.close()
            raise HarnessError(f"{conn.label}: {command!r} still running after {timeout_s:.0f}s (stopped)")
        for reader in readers:
            reader.join(timeout=30)
        status = channel.recv_exit_status()
    finally:
        client.close()

    def text(data: bytearray) -> str:
        return data.decode(errors="replace")

    return Result(status, text(out).removesuffix("\n"), text(err).removesuffix("\n"), text(both),
                  time.monotonic() - started)


@dataclass
class CommandRecord:
    """What the engine's state holds for one command: its inputs and its output state."""

    name: str
    resource_id: str
    inputs: dict[str, Any]  # unwrapped, for diffs
    state: dict[str, Any]  # as returned to the SDK (secret inputs stay wrapped)


@dataclass(frozen=True)
class CommandRun:
    """One execution the harness made (create, update, delete or a forced re-run)."""

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


@dataclass
class RemoteCommands:
    """The recorded state of every remote command, carried from one deployment to the next."""

    records: dict[str, CommandRecord] = field(default_factory=dict)  # in creation order
    runs: list[CommandRun] = field(default_factory=list)  # every execution of this deployment
    unchanged: list[str] = field(default_factory=list)  # declared again with the same inputs
    declared: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    @classmethod
    def following(cls, previous: RemoteCommands | None) -> RemoteCommands:
        """A fresh run's view: the previous run's records, no executions yet."""
        return cls(records=dict(previous.records) if previous else {})

    # -- engine operations ----------------------------------------------------------------
    def register(self, name: str, raw_inputs: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        """Create, update or keep ``name`` as the engine would for these inputs."""
        where = f"command.remote.Command '{name}'"
        inputs = unwrap(dict(raw_inputs))
        check_keys(where, inputs, COMMAND_KEYS)
        if inputs.get("environment") is not None:
            raise UnsupportedInputError(f"{where}: 'environment' is refused (needs AcceptEnv on the host; use stdin)")
        if inputs.get("logging") not in (None, *LOGGING):
            raise UnsupportedInputError(f"{where}.logging: {inputs['logging']!r} is not one of {LOGGING}")
        conn = Connection.parse(where, inputs.get("connection"))
        with self._lock:
            if name in self.declared:
                raise HarnessError(f"{where}: declared twice in one deployment")
            self.declared.add(name)
            old = self.records.get(name)
        if old is not None and old.inputs == inputs:
            with self._lock:
                self.unchanged.append(name)
            return old.resource_id, dict(old.state)
        if old is not None:
            changed = [key for key in REPLACE_KEYS if old.inputs.get(key) != inputs.get(key)]
            if changed:
                raise UnsupportedInputError(f"{where}: {', '.join(changed)} changed, which replaces the command; "
                                            "replacement is not implemented by the e2e harness")
            command = inputs.get("update") or inputs.get("create")
            action, resource_id = "update", old.resource_id
            env = _previous_output_env(inputs, old.state)
        else:
            command = inputs.get("create")
            action, resource_id, env = "create", f"{name}-{time.time_ns() & 0xFFFFFFFF:08x}", {}
        state = {**raw_inputs, "stdout": "", "stderr": ""}
        if command:
            result = self._run(name, action, conn, command, inputs.get("stdin"), env)
            state.update(stdout=result.stdout, stderr=result.stderr)
        elif old is not None:
            state.update(stdout=old.state.get("stdout", ""), stderr=old.state.get("stderr", ""))
        with self._lock:
            self.records[name] = CommandRecord(name, resource_id, inputs, state)
        return resource_id, dict(state)

    def rerun(self, name: str) -> CommandRun:
        """Run ``name``'s create (or update) again with its recorded inputs, as an update would."""
        record = self.records[name]
        inputs = record.inputs
        command = inputs.get("update") or inputs.get("create")
        if not command:
            raise HarnessError(f"{name}: nothing to run")
        where = f"command.remote.Command '{name}'"
        self._run(name, "rerun", Connection.parse(where, inputs["connection"]), command, inputs.get("stdin"),
                  _previous_output_env(inputs, record.state))
        return self.runs[-1]

    def destroy(self) -> list[str]:
        """Run every recorded ``delete`` in reverse creation order; stop at the first failure."""
        deleted = []
        for name in reversed(list(self.records)):
            record = self.records[name]
            command = record.inputs.get("delete")
            if command:
                where = f"command.remote.Command '{name}'"
                self._run(name, "delete", Connection.parse(where, record.inputs["connection"]), command,
                          None, _previous_output_env(record.inputs, record.state))
            with self._lock:
                del self.records[name]
            deleted.append(name)
        return deleted

    # -- internals ------------------------------------------------------------------------
    def _run(self, name: str, action: str, conn: Connection, command: str, stdin: str | None,
             env: Mapping[str, str]) -> Result:
        started = time.monotonic()
        try:
            result = execute(conn, command, stdin, env)
        except HarnessError as exc:
            self._log(CommandRun(name, action, conn.host, command, stdin, None, "", "", time.monotonic() - started,
                                 f"{conn.label}: {exc}"))
            raise HarnessError(f"{conn.label}: {exc}") from exc
        error = None
        if result.exit_status != 0:
            error = (f"{conn.label}: Process exited with status {result.exit_status}: running {command!r}:\n"
                     f"{result.combined}")
        self._log(CommandRun(name, action, conn.host, command, stdin, result.exit_status, result.stdout,
                             result.stderr, result.seconds, error))
        if error:
            raise HarnessError(error)
        return result

    def _log(self, run: CommandRun) -> None:
        with self._lock:
            self.runs.append(run)


def _previous_output_env(inputs: Mapping[str, Any], state: Mapping[str, Any]) -> dict[str, str]:
    if inputs.get("addPreviousOutputInEnv") is False:
        return {}
    values = unwrap({"PULUMI_COMMAND_STDOUT": state.get("stdout", ""),
                     "PULUMI_COMMAND_STDERR": state.get("stderr", "")})
    return {key: str(value) for key, value in values.items() if value}
