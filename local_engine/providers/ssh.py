"""SSH for ``command:remote:Command``, dialled and authenticated the way pulumi-command 1.2.1 does.

pulumi/pulumi-command provider/pkg/provider/remote/connection.go:
- defaults: port 22, user root, dialErrorLimit 10, perDialTimeout 15 (seconds; 0 is no limit);
- auth methods in order: the private key, the password, then the SSH agent at ``agentSocketPath``, or,
  when that is unset, at ``SSH_AUTH_SOCK`` when the variable is set and non-empty. An agent socket that
  cannot be dialled fails the connection (SSHConfig returns the error), before any dial of the host;
- without ``hostKey`` the host key is not checked (InsecureIgnoreHostKey); with it (an authorized_keys line,
  ssh.ParseAuthorizedKey: its first key) the client offers the server exactly that key's type
  (HostKeyAlgorithms = [publicKey.Type()]) and accepts only that key (FixedHostKey), in golang.org/x/crypto
  v0.48.0: "ssh: handshake failed: ssh: host key mismatch", or "ssh: no common algorithm for host key; we
  offered: [...]" when the server has no key of that type. Like any dial error it is retried up to
  dialErrorLimit and then reported as "after N failed attempts: <error>";
- dialWithRetry: pulumi's retry.Until (100 ms, growing 1.5x, at most 5 s between dials) until the dials
  exceed dialErrorLimit (-1: no limit), so the default allows 11 dials.
remote/commandOutputs.go (run): one session per command, stdin attached when non-empty, output
trimmed of one trailing newline; environment variables that sshd refuses fail the command, the
PULUMI_COMMAND_* ones only warn.
"""

from __future__ import annotations

import base64
import binascii
import io
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import paramiko

from local_engine.wire import EngineError, UnsupportedInputError, as_int, check_keys

CONNECTION_KEYS = ("host", "port", "user", "privateKey", "privateKeyPassword", "password", "dialErrorLimit",
                   "perDialTimeout", "hostKey", "agentSocketPath")
#: The real provider has no limit; the local engine stops a command that runs longer (a hung step).
COMMAND_TIMEOUT_S = 1800.0
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
    agent_socket_path: str | None = None

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
                   host_key=raw.get("hostKey"), agent_socket_path=raw.get("agentSocketPath"))

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
        raise EngineError(f"{self.label}: cannot parse the private key ({'; '.join(errors)})")

    def _agent_keys(self) -> list[Any]:
        """The agent's keys, when an agent is chosen (explicitly or by SSH_AUTH_SOCK); its socket must answer."""
        path = self.agent_socket_path if self.agent_socket_path is not None else os.environ.get("SSH_AUTH_SOCK")
        if not path and self.agent_socket_path is None:
            return []
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(path or "")
        except OSError as exc:
            raise EngineError(f"{self.label}: dial unix {path}: {exc.strerror or exc} (the SSH agent socket; "
                              "unset SSH_AUTH_SOCK or fix it)") from exc
        return _read_agent_keys(sock)

    def _pinned(self) -> bytes | None:
        """The pinned host key's blob (the first key of the ``hostKey`` authorized_keys text), or None."""
        if self.host_key is None:
            return None
        for line in self.host_key.splitlines():
            fields = line.split()
            if len(fields) >= 2 and not fields[0].startswith("#"):
                try:
                    blob = base64.b64decode(fields[1], validate=True)
                    paramiko.PKey.from_type_string(_blob_type(blob), blob)
                    return blob
                except (ValueError, binascii.Error, paramiko.SSHException) as exc:
                    raise EngineError(f"{self.label}: failed to parse host key: {exc}") from exc
        raise EngineError(f"{self.label}: failed to parse host key: ssh: no key found")

    def _host_key_check(self, client: paramiko.SSHClient) -> dict[str, list[str]] | None:
        """Set the client's host key policy as the provider's; the algorithms to disable when a key is pinned."""
        blob = self._pinned()
        if blob is None:
            client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
            return None
        client.set_missing_host_key_policy(_FixedHostKey(blob))
        # Only the pinned key's type is offered, as x/crypto's HostKeyAlgorithms = [publicKey.Type()]. paramiko
        # has no SHA-1 "ssh-rsa" host key algorithm: an RSA pin offers nothing, which fails as the Go client
        # does against OpenSSH 8.8 and later (they no longer offer "ssh-rsa").
        offered = _blob_type(blob)
        return {"keys": [k for k in paramiko.Transport._preferred_keys if k != offered]}

    def dial(self) -> paramiko.SSHClient:
        """Connect, retrying like pulumi-command: at most ``dial_error_limit`` failed dials (-1: no limit)."""
        self._pinned()  # the provider parses the host key first: a bad one fails before any dial
        pkey = self._pkey()
        agent_keys = self._agent_keys()
        delay, dials = DIAL_DELAY_S, 0
        while True:
            client = paramiko.SSHClient()
            disabled = self._host_key_check(client)
            timeout = self.per_dial_timeout or None
            try:
                self._connect(client, pkey, agent_keys, timeout, disabled)
                return client
            except (OSError, paramiko.SSHException) as exc:
                client.close()
                dials += 1
                handshake = _handshake_error(exc, self._pinned())
                if handshake and self.dial_error_limit != -1 and dials > self.dial_error_limit:
                    raise EngineError(f"after {dials - 1} failed attempts: {handshake}") from exc
                if self.dial_error_limit != -1 and dials > self.dial_error_limit:
                    reason = (", ".join(str(e) for e in exc.errors.values())
                              if isinstance(exc, paramiko.ssh_exception.NoValidConnectionsError) else str(exc))
                    raise EngineError(f"dial tcp {self.host}:{self.port}: {reason or type(exc).__name__} "
                                      f"(after {dials - 1} failed attempts)") from exc
            time.sleep(delay)
            delay = min(delay * DIAL_BACKOFF, DIAL_MAX_DELAY_S)

    def _connect(self, client: paramiko.SSHClient, pkey: paramiko.PKey | None, agent_keys: list[Any],
                 timeout: int | None, disabled: dict[str, list[str]] | None = None) -> None:
        # The key first, then the password (paramiko tries both in one connect), then each agent key.
        candidates: list[Any] = [pkey] if pkey is not None or self.password else []
        candidates += agent_keys
        for index, key in enumerate(candidates or [None]):
            try:
                client.connect(self.host, port=self.port, username=self.user, pkey=key, password=self.password,
                               timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, look_for_keys=False,
                               allow_agent=False, disabled_algorithms=disabled)
                return
            except paramiko.AuthenticationException:
                if index == len(candidates) - 1:
                    raise


class _HostKeyMismatchError(paramiko.SSHException):
    """The server's host key is not the pinned one."""


class _FixedHostKey(paramiko.MissingHostKeyPolicy):
    """x/crypto's FixedHostKey: the server's key must be the pinned one, byte for byte (whatever the name)."""

    def __init__(self, blob: bytes) -> None:
        self.blob = blob

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if key.asbytes() != self.blob:
            raise _HostKeyMismatchError(f"{hostname}: {key.get_name()} {key.get_base64()} is not the pinned key")


def _blob_type(blob: bytes) -> str:
    """The key type a public key blob starts with (its first SSH string)."""
    size = int.from_bytes(blob[:4], "big")
    if len(blob) < 4 + size:
        raise ValueError("ssh: short read")
    return blob[4:4 + size].decode(errors="replace")


def _handshake_error(exc: BaseException, pinned: bytes | None) -> str | None:
    """x/crypto's text for a failed host key check (what pulumi-command reports), or None for other errors."""
    if isinstance(exc, _HostKeyMismatchError):
        return "ssh: handshake failed: ssh: host key mismatch"
    if pinned is not None and isinstance(exc, paramiko.ssh_exception.IncompatiblePeer) and "host key" in str(exc):
        return f"ssh: handshake failed: ssh: no common algorithm for host key; we offered: [{_blob_type(pinned)}]"
    return None


def _read_agent_keys(sock: socket.socket) -> list[Any]:
    """The identities of the agent on ``sock`` (paramiko's agent protocol over an open connection)."""
    agent = paramiko.agent.AgentSSH()
    agent._connect(sock)
    return list(agent.get_keys())


@dataclass(frozen=True)
class Result:
    """One execution of a command on a host."""

    exit_status: int
    stdout: str
    stderr: str
    combined: str
    seconds: float


def execute(conn: Connection, command: str, stdin: str | None, env: Mapping[str, str] | None = None,
            timeout_s: float = COMMAND_TIMEOUT_S, warn: Callable[[str], None] = print) -> Result:
    """Run ``command`` in one SSH session with ``stdin``; returns the exit status and output."""
    started = time.monotonic()
    client = conn.dial()
    try:
        transport = client.get_transport()
        if transport is None:
            raise EngineError(f"{conn.label}: no SSH transport after connecting")
        channel = transport.open_session()
        for key, value in (env or {}).items():
            try:
                channel.set_environment_variable(key, value)
            except paramiko.SSHException:  # pragma: no cover - paramiko does not wait for the answer
                warn(f"{conn.label}: could not set environment variable {key!r} (AcceptEnv)")
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
            raise EngineError(f"{conn.label}: {command!r} still running after {timeout_s:.0f}s (stopped)")
        for reader in readers:
            reader.join(timeout=30)
        status = channel.recv_exit_status()
    finally:
        client.close()

    def text(data: bytearray) -> str:
        return data.decode(errors="replace")

    return Result(status, text(out).removesuffix("\n"), text(err).removesuffix("\n"), text(both),
                  time.monotonic() - started)
