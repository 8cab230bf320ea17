"""The deployment-target interface: components describe services, a target places them."""

from __future__ import annotations

import abc
import hashlib
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import pulumi

from config.models import ClusterConfig, Host
from operations.upgrade import LEADER_ROLES
from targets.manifest import ServiceManifest

if TYPE_CHECKING:
    from targets.converge import Control


@dataclass(frozen=True)
class File:
    """A file a service needs on its host; `secret` files hold credentials; `kind` names the configuration
    format the policy pack reads in it (catalog.manifest.FILE_KINDS), "" for none."""

    path: str
    content: pulumi.Input[str]
    mode: str = "0644"
    owner: str = "root"
    secret: bool = False
    kind: str = ""
    # For a file whose content holds secrets: the same file with placeholders for them (plain). The change
    # plan compares contents, or shapes where contents are secret (operations/change_plan.py).
    shape: str | None = None


@dataclass(frozen=True)
class Listener:
    """A socket a service opens on its host: `address` "0.0.0.0" is every address."""

    port: int
    address: str
    what: str


@dataclass(frozen=True)
class Process:
    """A long-running process of a service; `on_change` says how a config change reaches it."""

    name: str
    argv: tuple[str, ...]
    user: str = "root"
    on_change: Literal["restart", "reload"] = "restart"
    reload_signal: str = "HUP"
    # On a full host an OS service (e.g. cron) already does this job; containers run argv instead.
    host_service: str | None = None
    # The files of its service whose change it must take (by `on_change`); None: every one. A process
    # that re-reads its files by itself lists none, and a configuration change never touches it.
    reads: tuple[str, ...] | None = None
    # Shell run before a change is sent to the running process (e.g. HAProxy saving its server states).
    before_change: str | None = None
    # The packages whose new version reaches it only by `upgrade` (its binaries and the libraries it loads);
    # "reload" where the process re-executes its binary on its reload signal (HAProxy's master).
    packages: tuple[str, ...] = ()
    upgrade: Literal["restart", "reload"] = "restart"
    # Files of its service it reads only when it starts, though `on_change` is "reload": their change restarts
    # it, between `before_restart` and `after_restart` (shell; the latter runs also when the restart failed,
    # with $restart_rc set, and decides the outcome).
    restart_reads: tuple[str, ...] = ()
    before_restart: str | None = None
    after_restart: str | None = None


@dataclass(frozen=True)
class DataDir:
    """Persistent state of a service, kept across re-runs and removed only on request. `holds` is a path
    inside it whose existence means it already holds data: a new deployment refuses such a directory
    unless the stack says to adopt it (`adopt_existing_data`)."""

    name: str
    path: str
    owner: str
    mode: str = "0700"
    holds: str | None = None


@dataclass(frozen=True)
class Storage:
    """A directory shared by several services (the pgBackRest repository)."""

    name: str
    path: str
    owner: str
    resource: pulumi.Resource | None = None


@dataclass(frozen=True)
class HostStep:
    """A command run on a service's host before its converge (once the host can run it: its container
    started, its packages installed), again whenever `script` changes; the converge waits for it. A script
    that holds secrets is a secret Output (it travels on stdin; its output is kept secret)."""

    name: str
    script: pulumi.Input[str]


@dataclass(frozen=True)
class ServiceSpec:
    """Everything a target needs to run one service on one host."""

    role: str
    host: Host
    packages: tuple[str, ...]
    processes: tuple[Process, ...]
    files: tuple[File, ...] = ()
    data_dirs: tuple[DataDir, ...] = ()
    shared: tuple[Storage, ...] = ()
    listeners: tuple[Listener, ...] = ()
    published_ports: tuple[int, ...] = ()
    health: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()
    # False for services that are only healthy together with peers (etcd): a day-2 step waits for all.
    wait: bool = True
    # For a service that does not wait (wait=False): a shell condition, asked once its files are written and
    # before its processes change, under which it waits after all (an etcd member joining a running cluster).
    wait_when: str | None = None
    depends_on: tuple[pulumi.Resource, ...] = field(default=())
    # The previous member of a group (its `ready`): a change reaches this member only after that one took
    # it and is healthy, so a group changes one member at a time.
    after: tuple[pulumi.Resource, ...] = field(default=())
    # Plain facts the change plan compares beside the files (PostgreSQL parameters, Patroni's dynamic
    # settings): what a change of them does is said per name (operations/change_plan.py).
    facts: Mapping[str, Any] = field(default_factory=dict)
    before_converge: tuple[HostStep, ...] = ()
    # Bash run on the host before the service is replaced by an upgrade (a new image): it moves the service's
    # duties elsewhere (a PostgreSQL leader switches over). Targets without replacements ignore it.
    handover: str | None = None
    # Bash run by a new deployment's converge on data the host held before, when the stack adopts it
    # (pgha:adopt_existing_data): after the files are written, before anything starts. It may refuse (exit
    # non-zero) or set `defer=1`: then nothing starts now, and `start_deferred` starts the service once
    # `deferred_until` (a shell condition) holds. An Input: it may carry secrets.
    on_adopt: pulumi.Input[str] | None = None
    deferred_until: str | None = None
    # Bash a destroy runs on the host before and after it stops the service's processes (hosts only: a
    # container is removed with its processes).
    before_stop: str | None = None
    after_stop: str | None = None


@dataclass(frozen=True)
class Placement:
    """What a placed service gives back: the resource dependents wait on, its published endpoints (container
    port -> (host address, host port)) and every file the target installs for it (the spec's and its own)."""

    ready: pulumi.Resource
    published: dict[int, tuple[str, int]]
    files: tuple[File, ...] = ()


@dataclass(frozen=True)
class Member:
    """A member of a running PostgreSQL cluster as Patroni's /cluster lists it."""

    name: str
    address: str
    role: str
    state: str

    @property
    def leads(self) -> bool:
        return self.role in LEADER_ROLES


def generation_triggers(cfg: ClusterConfig, host: Host) -> list[str]:
    """What a host's commands (or container) carry of its generation: nothing until it is raised, so adding
    the setting changes nothing; raised, a new value replaces them (they run again as on a new host)."""
    generation = cfg.generation(host)
    return [f"host generation {generation}"] if generation else []


def digest(text: str) -> str:
    """A short digest of a file's content (or shape): enough to tell a change, nothing to read back."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def applied_facts(spec: ServiceSpec, placement: Placement) -> dict[str, Any]:
    """A placed service as the change plan sees it: each installed file's digest (of its content, or of its
    shape where the content holds secrets; files known only as Outputs, the TLS files, are left out), how
    each process takes a change, and the spec's facts."""
    files = {}
    for f in placement.files:
        text = f.shape if f.shape is not None else f.content
        if isinstance(text, str):
            files[f.path] = digest(text)
    every = [f.path for f in spec.files]
    processes = {p.name: {"on_change": p.on_change, "reads": list(every if p.reads is None else p.reads),
                          "packages": list(p.packages), "upgrade": p.upgrade,
                          **({"restart_reads": list(p.restart_reads)} if p.restart_reads else {})}
                 for p in spec.processes}
    return {"role": spec.role, "files": files, "processes": processes, **spec.facts}


# The program asks the running cluster before it declares anything, when the cluster CA is not a value yet
# (pulumi-tls outputs resolve during the deployment): the server is not verified for this read. Its answer only
# orders a rolling change (the leader last); every step on the hosts verifies the members it talks to.
_PROBE_TLS = ssl.create_default_context()
_PROBE_TLS.check_hostname = False
_PROBE_TLS.verify_mode = ssl.CERT_NONE


def fetch_json(url: str) -> Any:
    """What `url` answers with 200 right now, parsed as JSON; None for any other answer, none at all (a
    refused or silent port) or no JSON. An https URL whose server speaks plain HTTP (a Patroni REST API
    deployed before its TLS) is asked over http."""
    candidates = [url]
    if url.startswith("https://"):
        candidates.append("http://" + url.removeprefix("https://"))
    for candidate in candidates:
        try:
            context = _PROBE_TLS if candidate.startswith("https://") else None
            with urllib.request.urlopen(candidate, timeout=1, context=context) as response:
                return json.load(response) if int(response.status) == 200 else None
        except urllib.error.URLError as error:
            if not isinstance(error.reason, ssl.SSLError):
                return None
        except (OSError, ValueError):
            return None
    return None


class Target(abc.ABC):
    """A place to run services: Docker containers (dev) or bare-metal hosts over SSH (prod)."""

    kind: str
    control: Control  # how the converge script starts, reloads and restarts processes on this target's hosts

    def __init__(self, cfg: ClusterConfig) -> None:
        self.cfg = cfg
        # Host -> what this deployment applies there, plain (operations/change_plan.py compares two).
        self.applied: dict[str, dict[str, Any]] = {}

    @abc.abstractmethod
    def prepare(self, parent: pulumi.Resource) -> None:
        """Declare what every service on this target shares (network, image); called once."""

    @abc.abstractmethod
    def storage(self, name: str, path: str, owner: str, parent: pulumi.Resource) -> Storage:
        """Declare a directory shared by several services."""

    def place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        """Declare what runs `spec` on its host, and its manifest for the policy pack (targets/manifest.py);
        the returned `ready` resource is healthy when done."""
        placement = self._place(name, spec, parent)
        ServiceManifest(f"{name}-manifest", self.cfg.name, self.kind, spec, placement, parent)
        self.applied[spec.host.name] = {**applied_facts(spec, placement), **self.boot_facts(spec),
                                        # Where a node that leaves later is reached by its last steps.
                                        "address": str(spec.host.address),
                                        "generation": self.cfg.generation(spec.host)}
        return placement

    def boot_facts(self, spec: ServiceSpec) -> dict[str, Any]:
        """What the change plan compares to tell a replaced container or new packages (plain)."""
        return {}

    @abc.abstractmethod
    def _place(self, name: str, spec: ServiceSpec, parent: pulumi.Resource) -> Placement:
        """Declare the resources that run `spec` on its host."""

    @abc.abstractmethod
    def run_step(self, name: str, host: Host, script: pulumi.Input[str], depends_on: list[pulumi.Resource],
                 parent: pulumi.Resource, triggers: list[str] | None = None) -> pulumi.Resource:
        """Declare a day-2 step: `script` (bash, no secrets) run as root on `host` after `depends_on`, when
        the step is created and again whenever the script changes; a change of `triggers` replaces the step,
        which runs it as a new one. A non-zero exit fails the deployment."""

    def rolling_order(self, nodes: list[Host], members: list[Member] | None) -> list[Host]:
        """The order in which a rolling change takes PostgreSQL nodes: the replicas, then the leader (when
        the running cluster's `members` tell which it is); the configured order otherwise."""
        leader = next((n for n in nodes for m in members or [] if m.leads and m.name == n.name), None)
        return [n for n in nodes if n is not leader] + ([leader] if leader else [])

    @abc.abstractmethod
    def primary_urls(self, nodes: list[Host]) -> list[str]:
        """Where the machine running the program asks each node's Patroni whether it leads (/primary); its
        other endpoints are beside it."""

    def postgres_members(self, nodes: list[Host]) -> list[Member] | None:
        """The members of the running cluster (Patroni's /cluster, from the first of `nodes` that answers),
        or None when none answers (a first deployment, or a cluster that is down)."""
        for url in self.primary_urls(nodes):
            found = fetch_json(url.removesuffix("/primary") + "/cluster")
            if isinstance(found, dict):
                return [Member(str(m["name"]), str(m.get("host", "")), str(m.get("role", "")),
                               str(m.get("state", ""))) for m in found.get("members", []) if "name" in m]
        return None

    @abc.abstractmethod
    def retire(self, name: str, host: Host, script: str, processes: tuple[Process, ...],
               depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> pulumi.Resource:
        """Declare the last step of a service that leaves its host: `script` (bash, no secrets) as root on
        `host`, then `processes` stop for good there (its resources, deleted at the end of the deployment,
        would stop them only then). Run again on a stopped service, it stops nothing more."""

    def settle(self, depends_on: list[pulumi.Resource], parent: pulumi.Resource) -> list[pulumi.Resource]:
        """Declare what runs once every other step of a deployment has (after `depends_on`): on hosts, each
        host's firewall narrowed to what the stack has now. Nothing on a target without such a step."""
        return []

    def client_addresses(self) -> list[str]:
        """Addresses beyond the hosts' own through which clients reach services (they go into certificates)."""
        return []
