"""Client-side view of a running pgha cluster: Patroni state, SQL through HAProxy, faults, a writer."""

from __future__ import annotations

import itertools
import json
import os
import ssl
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar
from urllib.parse import parse_qs, unquote, urlparse

import psycopg

T = TypeVar("T")
# Scales every deadline (slow machines, CI under load); never shortens them below the defaults.
TIMEOUT_MULTIPLIER = max(1.0, float(os.environ.get("PGHA_TIMEOUT_SCALE", "1")))


def wait_for(what: str, check: Callable[[], T | None], timeout_s: float, interval_s: float = 0.5) -> T:
    """Poll `check` until it returns a truthy value; fail naming `what` and the last error at the deadline."""
    deadline = time.monotonic() + timeout_s * TIMEOUT_MULTIPLIER
    last: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last = value
        except Exception as error:
            last = error
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s * TIMEOUT_MULTIPLIER:.0f}s waiting for {what} "
                                 f"(last: {last!r})")
        time.sleep(interval_s)


def trust(pem: str, path: str | None = None) -> str:
    """Write a `ca_certificate` output to `path` (a new file by default) for libpq's sslrootcert, replacing it
    atomically: connections opened afterwards verify with it (libpq reads the file at each connect)."""
    if path is None:
        handle, path = tempfile.mkstemp(prefix="pgha-ca-", suffix=".crt")
        os.close(handle)
    with tempfile.NamedTemporaryFile("w", dir=os.path.dirname(path), delete=False) as f:
        f.write(pem)
    os.replace(f.name, path)
    return path


def endpoints(outputs: dict[str, Any], sslrootcert: str | None = None) -> tuple[Endpoint, Endpoint]:
    """The read-write and read-only endpoints of a stack's outputs, verifying the server with its
    `ca_certificate` (written to `sslrootcert`, a new file by default), as an application would."""
    path = trust(outputs["ca_certificate"], sslrootcert)
    return (Endpoint.from_dsn(outputs["app_dsn"], sslrootcert=path),
            Endpoint.from_dsn(outputs["readonly_dsn"], sslrootcert=path))


@dataclass(frozen=True)
class Endpoint:
    """host:port with credentials and TLS mode, as an application would use it."""

    host: str
    port: int
    user: str
    password: str
    dbname: str
    sslmode: str = "prefer"  # libpq's default, for a DSN that names none
    sslrootcert: str | None = None

    @classmethod
    def from_dsn(cls, dsn: str, sslrootcert: str | None = None) -> Endpoint:
        """The endpoint a DSN output names; `sslrootcert` is the file holding the `ca_certificate` output, which
        its `sslmode=verify-full` needs (an application writes it where its libpq reads it)."""
        url = urlparse(dsn)
        options = parse_qs(url.query)
        return cls(url.hostname or "", url.port or 5432, unquote(url.username or ""),
                   unquote(url.password or ""), url.path.lstrip("/"),
                   sslmode=options.get("sslmode", [cls.sslmode])[0],
                   sslrootcert=sslrootcert or options.get("sslrootcert", [None])[0])

    def connect(self, timeout_s: int = 3, host: str | None = None, port: int | None = None) -> psycopg.Connection:
        """A new autocommit connection (optionally to another host/port with the same credentials)."""
        options: dict[str, Any] = {"sslrootcert": self.sslrootcert} if self.sslrootcert else {}
        return psycopg.connect(host=host or self.host, port=port or self.port, user=self.user,
                               password=self.password, dbname=self.dbname, connect_timeout=timeout_s,
                               autocommit=True, sslmode=self.sslmode, **options)

    def query(self, sql: str, *params: Any, host: str | None = None, port: int | None = None) -> list[tuple]:
        with self.connect(host=host, port=port) as conn:
            cursor = conn.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []


class Patroni:
    """Patroni's REST API on every node, over HTTPS verified with the cluster CA (`ca_certificate`)."""

    def __init__(self, urls: list[str], ca_certificate: str | None = None) -> None:
        self.urls = urls
        self.context: ssl.SSLContext | None = None
        if ca_certificate is not None:
            self.trust(ca_certificate)

    @classmethod
    def of(cls, outputs: dict[str, Any]) -> Patroni:
        """The REST APIs a stack's outputs list, verified with its `ca_certificate` output."""
        return cls(outputs["patroni_rest_urls"], outputs["ca_certificate"])

    def trust(self, ca_certificate: str) -> None:
        """Verify the servers with `ca_certificate` (PEM) from now on (a CA rotation's new output)."""
        self.context = ssl.create_default_context(cadata=ca_certificate)

    def get(self, url: str, path: str, timeout_s: float = 2.0) -> tuple[int, Any]:
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=timeout_s, context=self.context) as response:
                body = response.read()
                return response.status, json.loads(body) if body else None
        except urllib.error.HTTPError as error:
            body = error.read()
            return error.code, json.loads(body) if body else None

    def cluster(self) -> dict[str, Any]:
        """`GET /cluster` from the first node that answers."""
        errors = []
        for url in self.urls:
            try:
                status, body = self.get(url, "/cluster")
                if status == 200:
                    return body
            except OSError as error:
                errors.append(f"{url}: {error}")
        raise ConnectionError("no Patroni REST API answered: " + "; ".join(errors))

    def members(self) -> dict[str, dict[str, Any]]:
        return {m["name"]: m for m in self.cluster()["members"]}

    def leader(self) -> str | None:
        return next((n for n, m in self.members().items() if m["role"] == "leader" and m["state"] == "running"),
                    None)

    def sync_standbys(self) -> list[str]:
        return [n for n, m in self.members().items() if m["role"] in ("sync_standby", "quorum_standby")]

    def healthy(self, expected: int, sync: bool = True) -> bool:
        """One running leader, every other member streaming on the leader's timeline, and (unless the
        cluster replicates asynchronously: `sync=False`) a sync standby."""
        members = self.members()
        leaders = [m for m in members.values() if m["role"] == "leader" and m["state"] == "running"]
        if len(members) != expected or len(leaders) != 1:
            return False
        timeline = leaders[0].get("timeline")
        replicas = [m for m in members.values() if m["role"] != "leader"]
        streaming = all(m["state"] == "streaming" and m.get("timeline") == timeline for m in replicas)
        return streaming and (not sync or bool(self.sync_standbys()))


@dataclass
class WriteLog:
    """What the writer saw: every acknowledged id with its time, and the errors in between."""

    acked: list[tuple[int, float]] = field(default_factory=list)
    errors: list[tuple[float, str]] = field(default_factory=list)
    in_doubt: list[int] = field(default_factory=list)

    def longest_pause(self, fault_at: float, until: float | None = None) -> tuple[float, float]:
        """The longest silence between acknowledged commits from just before the fault on, as the times of
        the last commit acknowledged before the error burst and of the first one after it."""
        times = [t for _, t in self.acked if fault_at - 1.0 <= t <= (until or float("inf"))]
        if len(times) < 2 or times[-1] <= fault_at:
            raise AssertionError("the writer has no acknowledged write on both sides of the fault")
        return max(itertools.pairwise(times), key=lambda pair: pair[1] - pair[0])

    def outage_around(self, fault_at: float, until: float | None = None) -> float:
        """The length of `longest_pause`."""
        start, end = self.longest_pause(fault_at, until)
        return end - start


class Writer(threading.Thread):
    """Inserts numbered rows through the read-write endpoint as fast as it can, reconnecting on error."""

    TABLE = "pgha_e2e_writes"

    def __init__(self, endpoint: Endpoint, interval_s: float = 0.02) -> None:
        super().__init__(daemon=True, name="pgha-writer")
        self.endpoint = endpoint
        self.interval_s = interval_s
        self.log = WriteLog()
        self._halt = threading.Event()
        self._next = 1
        # When the statement (or connection attempt) now waiting for the server began; None between them. A
        # stall with no errors and a statement in flight is a connection whose packets go nowhere.
        self.in_flight: float | None = None
        with endpoint.connect() as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {self.TABLE} (id bigint PRIMARY KEY, at timestamptz "
                         "NOT NULL DEFAULT clock_timestamp())")
            self._next = (conn.execute(f"SELECT coalesce(max(id), 0) + 1 FROM {self.TABLE}").fetchone() or [1])[0]

    def run(self) -> None:
        conn: psycopg.Connection | None = None
        while not self._halt.is_set():
            pause = self.interval_s
            self.in_flight = time.monotonic()
            try:
                if conn is None or conn.closed:
                    conn = self.endpoint.connect(timeout_s=2)
                    conn.execute("SET statement_timeout = '5s'")
                conn.execute(f"INSERT INTO {self.TABLE} (id) VALUES (%s)", (self._next,))
                self.log.acked.append((self._next, time.monotonic()))
                self._next += 1
            except psycopg.errors.UniqueViolation:
                # The previous attempt of this id committed but its acknowledgement was lost with the
                # connection (an in-doubt commit that survived the failover): not acked, move on.
                self.log.in_doubt.append(self._next)
                self._next += 1
                pause = 0
            except psycopg.Error as error:
                self.log.errors.append((time.monotonic(), str(error).splitlines()[0] if str(error) else repr(error)))
                if conn is not None:
                    conn.close()
                conn = None
                pause = 0.1
            finally:
                self.in_flight = None
            self._halt.wait(pause)
        if conn is not None:
            conn.close()

    def wait_acks(self, count: int, timeout_s: float = 60) -> None:
        """Block until `count` more writes are acknowledged."""
        target = len(self.log.acked) + count
        try:
            wait_for(f"{count} acknowledged writes", lambda: len(self.log.acked) >= target, timeout_s, 0.05)
        except AssertionError as error:
            started = self.in_flight
            waiting = f", a statement waiting {time.monotonic() - started:.1f}s for the server" if started else ""
            raise AssertionError(f"{error}; {count - (target - len(self.log.acked))} came, writer "
                                 f"{'running' if self.is_alive() else 'stopped'}{waiting}, last errors: "
                                 f"{self.log.errors[-3:]}") from None

    def stop(self) -> WriteLog:
        self._halt.set()
        self.join(timeout=30)
        return self.log

    def lost(self) -> list[int]:
        """Acknowledged ids that are not in the table (read through the read-write endpoint)."""
        ids = {row[0] for row in self.endpoint.query(f"SELECT id FROM {self.TABLE}")}
        return [i for i, _ in self.log.acked if i not in ids]


class Hosts(Protocol):
    """The machines of a cluster, as the scenarios use them: faults and commands by node name."""

    def kill(self, node: str) -> None: ...
    def stop(self, node: str, timeout_s: int = 60) -> None: ...
    def start(self, node: str) -> None: ...
    def is_running(self, node: str) -> bool: ...
    def disconnect(self, node: str) -> None: ...
    def reconnect(self, node: str, address: str) -> None: ...
    def exec(self, node: str, *argv: str, user: str = "root", check: bool = True,
             env: dict[str, str] | None = None) -> str: ...
    def is_writable(self, node: str) -> bool | None: ...


class DockerHosts:
    """Faults and commands on the containers of one dev cluster (`<cluster>-<node>`).

    ``prefix`` and ``network`` name other containers: the systemd test hosts of the ssh target are
    containers too (``SystemdHosts``)."""

    def __init__(self, cluster: str, prefix: str | None = None, network: str | None = None) -> None:
        import docker

        self.client = docker.from_env()
        self.cluster = cluster
        self.prefix = f"{cluster}-" if prefix is None else prefix
        self.network = network or cluster
        # Node -> the host it shares (a service placed on another service's host).
        self.aliases: dict[str, str] = {}

    def container(self, node: str) -> Any:
        return self.client.containers.get(f"{self.prefix}{self.aliases.get(node, node)}")

    def kill(self, node: str) -> None:
        """SIGKILL the whole container: the host is gone, as after a power loss."""
        self.container(node).kill()

    def stop(self, node: str, timeout_s: int = 60) -> None:
        """Graceful stop (SIGTERM to the init, which stops Patroni, which stops PostgreSQL)."""
        self.container(node).stop(timeout=timeout_s)

    def start(self, node: str) -> None:
        self.container(node).start()

    def is_running(self, node: str) -> bool:
        container = self.container(node)
        container.reload()
        return container.status == "running"

    def disconnect(self, node: str) -> None:
        self.client.networks.get(self.network).disconnect(self.container(node))

    def reconnect(self, node: str, address: str) -> None:
        self.client.networks.get(self.network).connect(self.container(node), ipv4_address=address)

    def exec(self, node: str, *argv: str, user: str = "root", check: bool = True,
             env: dict[str, str] | None = None) -> str:
        """Run argv on `node`; `env` (e.g. a password for a client) travels in the exec's environment, never
        in argv."""
        code, output = self.container(node).exec_run(list(argv), user=user, demux=False, environment=env)
        text = output.decode(errors="replace") if output else ""
        if check and code != 0:
            raise AssertionError(f"{node}: {' '.join(argv)} exited {code}:\n{text}")
        return text

    def is_writable(self, node: str) -> bool | None:
        """Whether PostgreSQL on `node` is a primary (not in recovery), asked locally; None if it is down."""
        try:
            code, output = self.container(node).exec_run(
                ["psql", "-XtAc", "SELECT NOT pg_is_in_recovery()"], user="postgres")
        except Exception:
            return None
        if code != 0:
            return None
        return output.decode().strip() == "t"


def container_processes(hosts: DockerHosts, nodes: list[str], pg_nodes: list[str]) -> dict[str, str]:
    """host/process -> an identity that changes when it restarts, on the dev target: each container (id and
    start), each process under its runner (the container and its PID: a new container's runner starts its
    processes in the same order, so they get the same PIDs), each PostgreSQL server (its start time)."""
    found: dict[str, str] = {}
    for node in nodes:
        container = hosts.container(node)
        found[f"{node}/container"] = f"{container.id[:12]} {container.attrs['State']['StartedAt']}"
        pids = hosts.exec(node, "bash", "-c", "grep -H . /run/pgha/*.pid", check=False)
        for line in pids.split():
            path, pid = line.split(":", 1)
            found[f"{node}/{path.rsplit('/', 1)[1].removesuffix('.pid')}"] = f"{container.id[:12]} {pid}"
    for node in pg_nodes:
        found[f"{node}/postmaster"] = hosts.exec(node, "psql", "-XtAc", "SELECT pg_postmaster_start_time()",
                                                 user="postgres").strip()
    return found


class SystemdHosts(DockerHosts):
    """The bare-metal-like test hosts of the ssh target (tests/e2e/hosts): systemd containers.

    Faults act on the whole host (kill = power loss; stop = clean shutdown through systemd); a
    started host boots and systemd starts the enabled pgha units, as on a real machine."""

    def __init__(self, cluster: str, prefix: str, network: str) -> None:
        super().__init__(cluster, prefix=prefix, network=network)

    def unit(self, node: str, unit: str) -> dict[str, str]:
        """`systemctl show` properties of `unit` on `node` (MainPID, ActiveEnterTimestamp, ...)."""
        def show() -> dict[str, str] | None:
            text = self.exec(node, "systemctl", "show", unit, "--property=MainPID,ActiveState,"
                             "ActiveEnterTimestamp,ExecMainStartTimestamp,NRestarts,UnitFileState,LoadState")
            properties = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
            return properties if "MainPID" in properties else None

        return wait_for(f"systemctl show {unit} on {node}", show, 10)


@dataclass(frozen=True)
class Sample:
    """One round of the watch: when, which nodes answered as primaries, which could not be asked."""

    at: float
    writable: tuple[str, ...]
    unanswered: tuple[str, ...]


class PrimaryWatch(threading.Thread):
    """Polls every node and records any moment when two of them are primaries at once.

    Its positive control: `start_watching()` returns only once the watch has seen, with every probe
    answered, exactly one writable node in a run of samples, so a watch that could not see a primary
    (a broken probe, a wrong node list) fails instead of reporting "never two"."""

    def __init__(self, hosts: Hosts, nodes: list[str], interval_s: float = 0.2) -> None:
        super().__init__(daemon=True, name="pgha-primary-watch")
        self.hosts, self.nodes, self.interval_s = hosts, nodes, interval_s
        self.history: list[Sample] = []
        self._halt = threading.Event()

    @property
    def samples(self) -> int:
        return len(self.history)

    @property
    def split_brain(self) -> list[tuple[float, list[str]]]:
        """(time, nodes) of every sample in which more than one node was writable."""
        return [(s.at, list(s.writable)) for s in self.history if len(s.writable) > 1]

    def run(self) -> None:
        while not self._halt.is_set():
            answers = {n: self.hosts.is_writable(n) for n in self.nodes}
            self.history.append(Sample(time.monotonic(), tuple(n for n, w in answers.items() if w),
                                       tuple(n for n, w in answers.items() if w is None)))
            self._halt.wait(self.interval_s)

    def start_watching(self, baseline: int = 5, timeout_s: float = 30) -> None:
        """Start, and wait until the last `baseline` samples each saw one primary with every node answering."""
        self.start()

        def seen() -> bool:
            recent = self.history[-baseline:]
            return len(recent) == baseline and all(len(s.writable) == 1 and not s.unanswered for s in recent)

        try:
            wait_for(f"the watch to see exactly one primary in {baseline} samples", seen, timeout_s, 0.1)
        except AssertionError:
            self.stop()
            raise AssertionError(f"the watch never saw one primary with every node answering: "
                                 f"{self.history[-3:]}") from None

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=30)
